; Vector RW: α and β of length D, shaped [D, 1, 1] to broadcast along axis 1.
test augment rw(vector) random
$x: f32[1, 8, 4, 4]
$f: f32[1, 8, 4, 4]
block 0 axis 1
(resadd $x $f)

; precise-output
; variant: rw(vector)
; extracted: (+ (* laurel.0.alpha $f) (* laurel.0.beta $x))
; fired: expand-rw 1, resadd-to-rw 1
; cost: 3.000
; stop: saturated
; params:
;   laurel.0.alpha α [8, 1, 1] f32 Uniform { low: 0.5, high: 1.5 }
;   laurel.0.beta β [8, 1, 1] f32 Uniform { low: 0.5, high: 1.5 }
