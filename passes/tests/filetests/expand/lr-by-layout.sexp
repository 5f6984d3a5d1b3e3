; laurel-lr expands by its block's layout: 1x1 convolutions on axis 1.
test rules expand-lr-channel-last,expand-lr-channel-first
$f: f32[1, 8, 4, 8]
$x: f32[1, 8, 4, 8]
$a: f32[2, 8]
$b: f32[8, 2]
block 0 axis 1
(laurel-lr $f $x $a $b)

; precise-output
; extracted: (+ (+ $f $x) (conv1x1 (conv1x1 $x $a) $b))
; fired: expand-lr-channel-first 1
; cost: forbidden -> 4.000
; stop: saturated
