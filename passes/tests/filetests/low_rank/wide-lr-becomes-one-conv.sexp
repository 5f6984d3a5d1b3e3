; LR of rank 16 on 8 channels: (x·A)·B is larger than A·B, and the skip folds
; in too: x + f + x·(A·B) becomes f + x·(I + A·B).
test fuse
$f: f32[1, 8, 3, 3]
$x: f32[1, 8, 3, 3]
weight $wa: f32[16, 8, 1, 1]
weight $wb: f32[8, 16, 1, 1]
onnx:Conv@n1.0: f32[1, 16, 3, 3] linear input=0 out=1 in=1 map=first flops=2304
onnx:Conv@n2.0: f32[1, 8, 3, 3] linear input=0 out=1 in=1 map=first flops=2304
(+ (+ $f $x) (onnx:Conv@n2.0 (onnx:Conv@n1.0 $x $wa) $wb))

; precise-output
; extracted: (+ $f (onnx:Conv@n2.0 $x (add-eye (compose $wa $wb))))
; fired: reassociate-channel-maps 1, skip-into-channel-map 1
; cost: 11.346 -> 5.648
; stop: saturated
