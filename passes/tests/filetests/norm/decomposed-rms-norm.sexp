; RMSNorm written out: x·Reciprocal(Sqrt(mean(x²) + ε)) of 4·x. Pow carries 16,
; the mean and the sum factor it out, Sqrt needs an exact root of 16 (4).
test rules pow-of-scaled,scale-out-of-homogeneous,factor-sum-bias-left,sqrt-of-scaled,reciprocal-of-scaled,scalar-out-of-product-left,scalar-out-of-product-right,combine-scalars,mul-one
$x: f32[2, 8]
weight $eps: f32[]
onnx:Pow@n1.0: f32[2, 8] power 2
onnx:ReduceMean@n2.0: f32[2, 1] homogeneous 0
onnx:Sqrt@n3.0: f32[2, 1] sqrt
onnx:Reciprocal@n4.0: f32[2, 1] reciprocal
(* (* 4 $x) (onnx:Reciprocal@n4.0 (onnx:Sqrt@n3.0 (+ (onnx:ReduceMean@n2.0 (onnx:Pow@n1.0 (* 4 $x) 2)) $eps))))

; precise-output
; extracted: (* $x (onnx:Reciprocal@n4.0 (onnx:Sqrt@n3.0 (+ (onnx:ReduceMean@n2.0 (onnx:Pow@n1.0 $x 2)) (* 1/16 $eps)))))
; fired: combine-scalars 5, factor-sum-bias-left 1, mul-one 1, pow-of-scaled 1, reciprocal-of-scaled 1, scalar-out-of-product-left 2, scalar-out-of-product-right 2, scale-out-of-homogeneous 1, sqrt-of-scaled 1
; cost: 2.108 -> 1.806
; stop: saturated
