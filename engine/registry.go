package engine

import (
	"sync"

	"github.com/imgate/imgate/router"
)

// registry maps a user to their live, logged-in connections (PROTOCOL §2:
// a user may hold many, and every push goes to all of them). It is a
// power-of-two number of shards, each a read-write lock over a map, so
// pushes to different users rarely meet on a lock. Lookups allocate
// nothing (TestRegistryDeliverNoAlloc).
type registry struct {
	shards [regShards]regShard
	// presence, if set, hears of each change of a user's connections
	// with their number after it, under the shard lock so that the events
	// of one user arrive in order. It must not block or take a registry
	// lock.
	presence func(c *conn, conns int)
}

const regShards = 256

type regShard struct {
	mu sync.RWMutex
	m  map[uint64]connList
	_  [32]byte // keep shards on separate cache lines
}

// connList is the set of one user's connections. Users hold few (tabs,
// terminals), so a slice beats a map; order is not meaningful.
type connList []*conn

func (r *registry) init() {
	for i := range r.shards {
		r.shards[i].m = make(map[uint64]connList)
	}
}

func (r *registry) shard(uid uint64) *regShard {
	// Fibonacci hashing: dense uids spread over all shards.
	return &r.shards[(uid*0x9E3779B97F4A7C15)>>(64-8)]
}

// add registers c unless uid holds max connections already (max <= 0:
// no cap) and reports whether it did.
func (r *registry) add(uid uint64, c *conn, max int) bool {
	sh := r.shard(uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := len(sh.m[uid])
	if max > 0 && n >= max {
		return false
	}
	sh.m[uid] = append(sh.m[uid], c)
	if r.presence != nil {
		r.presence(c, n+1)
	}
	return true
}

// remove drops c from uid's set; it is a no-op if c is not there.
func (r *registry) remove(uid uint64, c *conn) {
	sh := r.shard(uid)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := sh.m[uid]
	for i, x := range l {
		if x != c {
			continue
		}
		last := len(l) - 1
		l[i] = l[last]
		l[last] = nil
		if last == 0 {
			delete(sh.m, uid)
		} else {
			sh.m[uid] = l[:last]
		}
		if r.presence != nil {
			r.presence(c, last)
		}
		return
	}
}

// deliver sends frame to every connection of uid but skip and counts the
// takers.
func (r *registry) deliver(uid uint64, frame []byte, skip router.Session, t *router.Tracker) int {
	sh := r.shard(uid)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	n := 0
	for _, c := range sh.m[uid] {
		if router.Session(c) != skip && c.send(frame, t, 0) {
			n++
		}
	}
	return n
}

func (r *registry) disconnect(uid uint64, code uint16, reason string) int {
	return r.disconnectIf(uid, nil, code, reason)
}

// disconnectIf closes uid's connections that match (nil: all) and counts
// them.
func (r *registry) disconnectIf(uid uint64, match func(*conn) bool, code uint16, reason string) int {
	sh := r.shard(uid)
	sh.mu.RLock()
	l := append(connList(nil), sh.m[uid]...)
	sh.mu.RUnlock()
	n := 0
	for _, c := range l {
		if match == nil || match(c) {
			c.Close(code, reason)
			n++
		}
	}
	return n
}

// online reports whether uid has a connection that takes pushes: one
// that is closing or over its cap is offline at once (PROTOCOL §2), even
// before it leaves the registry.
func (r *registry) online(uid uint64) bool {
	sh := r.shard(uid)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for _, c := range sh.m[uid] {
		if !c.out.stopped.Load() {
			return true
		}
	}
	return false
}

func (r *registry) users() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
