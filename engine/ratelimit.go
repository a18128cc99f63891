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
	if b.take(now, rate, burst) {
		return true, false
	}
	return false, b.refuse(now)
}

// take spends a token at now and reports whether there was one; a message
// without one is not yet a refusal (receipt acks are served anyway).
func (b *bucket) take(now int64, rate, burst float64) bool {
	if b.last == 0 {
		b.tokens, b.last = burst, now
	}
	b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/float64(time.Second))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// refuse records a refusal at now and reports whether the connection has
// now been flooding for too long.
func (b *bucket) refuse(now int64) (abusive bool) {
	if b.refusedAt == 0 || now-b.refusedAt > int64(floodPause) {
		b.floodStart = now
	}
	b.refusedAt = now
	return now-b.floodStart >= int64(floodDuration)
}
