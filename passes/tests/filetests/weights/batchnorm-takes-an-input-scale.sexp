; BatchNormalization(c·x) takes c into its scale and 1/c into its mean.
test rules absorb-input-scale
$x: f32[1, 4, 2, 2]
weight $scale: f32[4]
weight $bias: f32[4]
weight $mean: f32[4]
weight $var: f32[4]
onnx:BatchNormalization@n1.0: f32[1, 4, 2, 2] linear input=0 out=1,2 in=1,3^-1
(onnx:BatchNormalization@n1.0 (* 2 $x) $scale $bias $mean $var)

; precise-output
; extracted: (onnx:BatchNormalization@n1.0 $x (* 2 $scale) $bias (* 1/2 $mean) $var)
; fired: absorb-input-scale 1
; cost: 0.606 -> 0.304
; stop: saturated
