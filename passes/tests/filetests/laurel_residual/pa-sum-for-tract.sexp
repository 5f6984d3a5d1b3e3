; PA's weighted sum of three states, for tract: one LaurelResidual op.
test fuse
target tract
size N=16
$f: f32[N, 64]
$x: f32[N, 64]
$s1: f32[N, 64]
$s2: f32[N, 64]
(+ (+ $f $x) (+ (* 1/4 $s1) (* -1/8 $s2)))

; precise-output
; extracted: (laurel-residual 1 $f 1 $x 1/4 $s1 -1/8 $s2)
; fired: factor-sum-left 1, factor-sum-right 1, sum-to-laurel-residual 4
; cost: 2.524 -> 0.956
; stop: saturated
