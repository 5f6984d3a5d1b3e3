; RW on one conv block: x + conv(x) becomes α·f + β·x, expanded.
test augment rw
$x: f32[1, 8, 4, 4]
weight $w: f32[8, 8, 3, 3]
onnx:Conv@n3.0: f32[1, 8, 4, 4] linear input=0 out=1 in=1
block 0 axis 1
(resadd $x (onnx:Conv@n3.0 $x $w))

; precise-output
; variant: rw(softmax)
; extracted: (+ (* laurel.0.alpha (onnx:Conv@n3.0 $x $w)) (* laurel.0.beta $x))
; fired: expand-rw 1, resadd-to-rw 1
; cost: 4.000
; stop: saturated
; params:
;   laurel.0.alpha α [] f32 Derived(Softmax)
;   laurel.0.beta β [] f32 Derived(Softmax)
;   laurel.0.a softmax logit of α [] f32 Constant(0.0)
;   laurel.0.b softmax logit of β [] f32 Constant(0.0)
