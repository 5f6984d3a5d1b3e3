; The same block for tract: no merge is offered.
test fuse
target tract
$h: f32[8, 32]
$x: f32[8, 32]
weight $wo: f32[32, 32]
weight $wa: f32[32, 4]
weight $wb: f32[4, 32]
onnx:MatMul@n1.0: f32[8, 32] linear input=0 out=1 in=1 map=last flops=16384
onnx:MatMul@n2.0: f32[8, 32] linear input=0 out=1 in=1 map=last flops=2048
onnx:MatMul@n3.0: f32[8, 4] linear input=0 out=1 in=1 map=last flops=2048
(+ (+ (onnx:MatMul@n1.0 $h $wo) $x) (onnx:MatMul@n2.0 (onnx:MatMul@n3.0 $x $wa) $wb))

; precise-output
; extracted: (+ (+ (onnx:MatMul@n1.0 $h $wo) $x) (onnx:MatMul@n2.0 (onnx:MatMul@n3.0 $x $wa) $wb))
; fired: sum-to-laurel-residual 1
; cost: 17.039 -> 17.039
; stop: saturated
