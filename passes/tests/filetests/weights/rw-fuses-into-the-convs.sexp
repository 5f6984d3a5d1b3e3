; RW with positive scalars on a ResNet-like block: α goes into the second conv's
; weights, β travels the stream to the classifier's weight. No Mul remains.
test fuse
$x: f32[1, 8, 4, 4]
weight $w1: f32[8, 8, 3, 3]
weight $b1: f32[8]
weight $w2: f32[8, 8, 3, 3]
weight $b2: f32[8]
weight $fc: f32[8, 10]
onnx:Conv@n1.0: f32[1, 8, 4, 4] linear input=0 out=1,2 in=1
onnx:Relu@n2.0: f32[1, 8, 4, 4] homogeneous 0 positive
onnx:Conv@n3.0: f32[1, 8, 4, 4] linear input=0 out=1,2 in=1
onnx:Relu@n4.0: f32[1, 8, 4, 4] homogeneous 0 positive
onnx:GlobalAveragePool@n5.0: f32[1, 8, 1, 1] homogeneous 0
onnx:Flatten@n6.0: f32[1, 8] homogeneous 0
onnx:MatMul@n7.0: f32[1, 10] linear input=0 out=1 in=1
(onnx:MatMul@n7.0 (onnx:Flatten@n6.0 (onnx:GlobalAveragePool@n5.0 (onnx:Relu@n4.0 (+ (* 1/2 (onnx:Conv@n3.0 (onnx:Relu@n2.0 (onnx:Conv@n1.0 $x $w1 $b1)) $w2 $b2)) (* 3/2 $x))))) $fc)

; precise-output
; extracted: (onnx:MatMul@n7.0 (onnx:Flatten@n6.0 (onnx:GlobalAveragePool@n5.0 (onnx:Relu@n4.0 (+ (onnx:Conv@n3.0 (onnx:Relu@n2.0 (onnx:Conv@n1.0 $x $w1 $b1)) (* 1/3 $w2) (* 1/3 $b2)) $x)))) (* 3/2 $fc))
; fired: absorb-input-scale 2, combine-scalars 1, factor-sum-into-linear 1, factor-sum-left 1, factor-sum-right 1, scale-into-weights 2, scale-out-of-homogeneous 6
; cost: 3.184 -> 2.534
; stop: saturated
