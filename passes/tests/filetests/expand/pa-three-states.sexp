; laurel-pa of three states expands into a sum folded from the left.
test rules expand-pa
$f: f32[2, 8]
$x: f32[2, 8]
$s1: f32[2, 8]
$s2: f32[2, 8]
$g0: f32[]
$g1: f32[]
$g2: f32[]
(laurel-pa $f $x $g0 $x $g1 $s1 $g2 $s2)

; precise-output
; extracted: (+ (+ $f $x) (+ (+ (* $g0 $x) (* $g1 $s1)) (* $g2 $s2)))
; fired: expand-pa 1
; cost: forbidden -> 7.000
; stop: saturated
