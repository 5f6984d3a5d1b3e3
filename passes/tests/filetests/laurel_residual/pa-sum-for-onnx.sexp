; The same sum for onnxruntime: Adds and Muls stay.
test fuse
size N=16
$f: f32[N, 64]
$x: f32[N, 64]
$s1: f32[N, 64]
$s2: f32[N, 64]
(+ (+ $f $x) (+ (* 1/4 $s1) (* -1/8 $s2)))

; precise-output
; extracted: (+ (+ $f $x) (+ (* 1/4 $s1) (* -1/8 $s2)))
; fired: factor-sum-left 1, factor-sum-right 1
; cost: 2.524 -> 2.524
; stop: saturated
