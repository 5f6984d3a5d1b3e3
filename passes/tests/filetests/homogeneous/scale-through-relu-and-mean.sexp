; A positive scale leaves a ReLU and a mean towards the product that takes it.
test fuse
$x: f32[2, 8]
weight $w: f32[8, 4]
onnx:Relu@n1.0: f32[2, 8] homogeneous 0 positive
onnx:ReduceMean@n2.0: f32[2, 1] homogeneous 0
onnx:MatMul@n3.0: f32[2, 4] linear input=0 out=1 in=1 map=last flops=128
(onnx:MatMul@n3.0 (onnx:Relu@n1.0 (* 3 $x)) $w)
(onnx:ReduceMean@n2.0 (onnx:Relu@n1.0 (* 3 $x)))

; precise-output
; extracted: (onnx:MatMul@n3.0 (onnx:Relu@n1.0 $x) (* 3 $w))
; extracted: (* 3 (onnx:ReduceMean@n2.0 (onnx:Relu@n1.0 $x)))
; fired: absorb-input-scale 1, scale-out-of-homogeneous 2
; cost: 6.210 -> 6.208
; stop: saturated
