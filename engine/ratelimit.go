package engine

import "time"

// Rate limiting (PROTOCOL §6, 10028): every message a client sends spends a
// token from its connection's bucket, refilled at Rate per second up to
// Burst. A message without a token is answered 10028 and not executed. A
// client refused again and again for floodDuration, never pausing a whole
// second, is not merely bursting: it is closed with 1008.

// Defaults of the per-connection bucket.
const (
	DefaultRateLimit = 200 // messages per second
	DefaultRateBurst = 400
	// floodDuration is how long refusals must go on to make a flood: one
	// burst that overflows is refused, not punished.
	floodDuration = 5 * time.Second
	// floodPause is the quiet time that ends a flood.
	floodPause = time.Second
)

// bucket is loop-owned state of one connection.
type bucket struct {
	tokens     float64
	last       int64 // unix nanos of the last refill
	floodStart int64 // unix nanos of the first refusal of the current flood
	refusedAt  int64 // unix nanos of the last refusal
}

// allow spends a token at now and reports whether there was one, and
// whether the connection has now been flooding for too long.
func (b *bucket) allow(now int64, rate, burst float64) (ok, abusive bool) {
	if b.last == 0 {
		b.tokens, b.last = burst, now
	}
	b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/float64(time.Second))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	if b.refusedAt == 0 || now-b.refusedAt > int64(floodPause) {
		b.floodStart = now
	}
	b.refusedAt = now
	return false, now-b.floodStart >= int64(floodDuration)
}
