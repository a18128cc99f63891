package engine

import "testing"

func TestRegistry(t *testing.T) {
	var r registry
	r.init()
	const uid, other = 42, 43
	a, b, c := &conn{id: 1}, &conn{id: 2}, &conn{id: 3}
	x := &conn{id: 4}

	steps := []struct {
		name   string
		do     func()
		online bool
		users  int
	}{
		{"empty", func() {}, false, 0},
		{"add a", func() { r.add(uid, a, 0) }, true, 1},
		{"add b", func() { r.add(uid, b, 0) }, true, 1},
		{"add c", func() { r.add(uid, c, 0) }, true, 1},
		{"add x to another user", func() { r.add(other, x, 0) }, true, 2},
		{"remove absent conn", func() { r.remove(uid, x) }, true, 2},
		{"remove from absent user", func() { r.remove(999, a) }, true, 2},
		{"remove b", func() { r.remove(uid, b) }, true, 2},
		{"remove b again", func() { r.remove(uid, b) }, true, 2},
		{"remove a", func() { r.remove(uid, a) }, true, 2},
		{"remove c, the last", func() { r.remove(uid, c) }, false, 1},
		{"remove c again", func() { r.remove(uid, c) }, false, 1},
		{"add a back", func() { r.add(uid, a, 0) }, true, 2},
		{"remove x", func() { r.remove(other, x) }, true, 1},
	}
	for _, s := range steps {
		s.do()
		if got := r.online(uid); got != s.online {
			t.Fatalf("after %q: online(%d) = %v, want %v", s.name, uid, got, s.online)
		}
		if got := r.users(); got != s.users {
			t.Fatalf("after %q: users() = %d, want %d", s.name, got, s.users)
		}
	}
	if !r.online(uid) || r.online(other) {
		t.Fatalf("final state: online(uid)=%v online(other)=%v", r.online(uid), r.online(other))
	}
}

// TestRegistryManyUsers spreads dense uids over the shards and removes
// them again.
func TestRegistryManyUsers(t *testing.T) {
	var r registry
	r.init()
	const n = 1000
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{id: uint64(i)}
		r.add(uint64(i), conns[i], 0)
	}
	if got := r.users(); got != n {
		t.Fatalf("users() = %d, want %d", got, n)
	}
	used := 0
	for i := range r.shards {
		if len(r.shards[i].m) > 0 {
			used++
		}
	}
	if used < regShards/2 {
		t.Errorf("dense uids use only %d of %d shards", used, regShards)
	}
	for i, c := range conns {
		r.remove(uint64(i), c)
		if r.online(uint64(i)) {
			t.Fatalf("uid %d online after its only conn was removed", i)
		}
	}
	if got := r.users(); got != 0 {
		t.Fatalf("users() = %d after removing all", got)
	}
}

// TestRegistryDeliverDead: connections whose outbox is dead take nothing.
func TestRegistryDeliverDead(t *testing.T) {
	var r registry
	r.init()
	e := &Engine{}
	for i := range 3 {
		c := &conn{id: uint64(i), e: e}
		c.discard() // dead: Send reports false without touching the socket
		r.add(7, c, 0)
	}
	if n := r.deliver(7, []byte("frame"), nil, nil); n != 0 {
		t.Fatalf("deliver to dead conns = %d, want 0", n)
	}
	if n := r.deliver(8, []byte("frame"), nil, nil); n != 0 {
		t.Fatalf("deliver to an absent user = %d, want 0", n)
	}
}
