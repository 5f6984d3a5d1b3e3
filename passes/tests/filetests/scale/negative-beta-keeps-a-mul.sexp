; A negative skip scale cannot pass a ReLU: one Mul stays (the whole fusion pass).
test fuse
$x: f32[1, 8, 4, 4]
weight $w1: f32[8, 8, 3, 3]
weight $w2: f32[8, 8, 3, 3]
onnx:Conv@n1.0: f32[1, 8, 4, 4] linear input=0 out=1 in=1
onnx:Relu@n2.0: f32[1, 8, 4, 4] homogeneous 0 positive
onnx:Conv@n3.0: f32[1, 8, 4, 4] linear input=0 out=1 in=1
onnx:Relu@n4.0: f32[1, 8, 4, 4] homogeneous 0 positive
(onnx:Relu@n4.0 (+ (* 1/2 (onnx:Conv@n3.0 (onnx:Relu@n2.0 (onnx:Conv@n1.0 $x $w1)) $w2)) (* -3/2 $x)))

; precise-output
; extracted: (onnx:Relu@n4.0 (+ (onnx:Conv@n3.0 (onnx:Relu@n2.0 (onnx:Conv@n1.0 $x $w1)) (* 1/2 $w2)) (* -3/2 $x)))
; fired: factor-sum-into-linear 1, factor-sum-left 1, factor-sum-right 1, scale-into-weights 2, scale-out-of-homogeneous 1
; cost: 2.279 -> 1.954
; stop: saturated
