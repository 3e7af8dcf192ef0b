package svixtest

import (
	"math/rand/v2"
	"time"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ksuidEpoch is the KSUID epoch (2014-05-13), which Svix ids use.
const ksuidEpoch = 1400000000

// idGenerator makes 27-character KSUID-like ids (seconds, counter, random; each
// fixed-width base62) that sort lexicographically in creation order. It is not
// safe for concurrent use: Server guards it with its mutex.
type idGenerator struct {
	lastSec uint64
	counter uint64
}

func (g *idGenerator) next(prefix string) string {
	sec := uint64(max(time.Now().Unix()-ksuidEpoch, 0))
	g.lastSec = max(g.lastSec, sec)
	g.counter++
	buf := make([]byte, 0, len(prefix)+27)
	buf = append(buf, prefix...)
	buf = appendBase62(buf, g.lastSec, 6)
	buf = appendBase62(buf, g.counter, 11)
	buf = appendBase62(buf, rand.Uint64(), 10)
	return string(buf)
}

// appendBase62 appends the width least significant base62 digits of v, zero padded.
func appendBase62(dst []byte, v uint64, width int) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, width)...)
	for i := len(dst) - 1; i >= start; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
	return dst
}
