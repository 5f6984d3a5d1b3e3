; PA's own-state term γ0·x joins the skip: x + … + γ0·x = (1 + γ0)·x + …
test rules combine-like-terms
$f: f32[2, 8]
$x: f32[2, 8]
$s1: f32[2, 8]
(+ (+ $f $x) (+ (* 1/4 $x) (* 1/8 $s1)))

; precise-output
; extracted: (+ $f (+ (* 5/4 $x) (* 1/8 $s1)))
; fired: combine-like-terms 1
; cost: 1.516 -> 1.213
; stop: saturated
