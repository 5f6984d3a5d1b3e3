; Relu(−2·x) ≠ −2·Relu(x): the scale stays.
test rules scale-out-of-homogeneous
$x: f32[2, 8]
onnx:Relu@n1.0: f32[2, 8] homogeneous 0 positive
(onnx:Relu@n1.0 (* -2 $x))

; precise-output
; extracted: (onnx:Relu@n1.0 (* -2 $x))
; fired: none
; cost: 0.606 -> 0.606
; stop: saturated
