; A post-LN block: the skip's β·x and α·f factor out, and LayerNorm takes the
; scale into its ε (the whole fusion pass).
test fuse
$x: f32[2, 8]
weight $w: f32[8, 8]
weight $g: f32[8]
weight $b: f32[8]
onnx:MatMul@n1.0: f32[2, 8] linear input=0 out=1 in=1 map=last flops=256
onnx:LayerNormalization@n2.0: f32[2, 8] norm input=0 eps=3
(onnx:LayerNormalization@n2.0 (+ (* 2 (onnx:MatMul@n1.0 $x $w)) (* 2 $x)) $g $b 1/100000)

; precise-output
; extracted: (onnx:LayerNormalization@n2.0 (onnx:MatMul@n1.0 $x (add-eye $w)) $g $b 1/400000)
; fired: factor-sum-left 3, factor-sum-right 1, mul-one 2, norm-absorbs-scale 1, scale-into-weights 2, skip-into-channel-map 1
; cost: 6.520 -> 5.611
; stop: saturated
