//go:build !race

package engine

import "testing"

// TestRegistryDeliverNoAlloc: registry lookups allocate nothing (STYLE §2).
// The race detector allocates on its own, hence the build tag.
func TestRegistryDeliverNoAlloc(t *testing.T) {
	var r registry
	r.init()
	for uid := uint64(1); uid <= 4; uid++ {
		for range 3 {
			r.add(uid, &conn{}, 0)
		}
	}
	dead := &conn{e: &Engine{}}
	dead.discard()
	r.add(100, dead, 0)
	frame := []byte("frame")

	tests := []struct {
		name string
		fn   func()
	}{
		{"online present", func() { _ = r.online(2) }},
		{"online absent", func() { _ = r.online(99) }},
		{"deliver absent", func() { _ = r.deliver(99, frame, nil, nil) }},
		{"deliver dead", func() { _ = r.deliver(100, frame, nil, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if allocs := testing.AllocsPerRun(1000, tt.fn); allocs != 0 {
				t.Fatalf("%v allocs/op, want 0", allocs)
			}
		})
	}
}
