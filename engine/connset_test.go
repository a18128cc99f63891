package engine

import (
	"slices"
	"testing"
)

// TestConnSet: removal swaps the last connection of a shard into the
// hole and keeps indexes right; removing twice or an unknown conn is a
// no-op; each sees exactly the members.
func TestConnSet(t *testing.T) {
	var s connSet
	conns := make([]*conn, 300) // several per shard
	for i := range conns {
		conns[i] = &conn{id: uint64(i + 1)}
		s.add(conns[i])
	}
	members := func() []uint64 {
		var ids []uint64
		s.each(func(c *conn) { ids = append(ids, c.id) })
		slices.Sort(ids)
		return ids
	}
	want := map[uint64]bool{}
	for _, c := range conns {
		want[c.id] = true
	}
	steps := []struct {
		name string
		rm   []int
	}{
		{"first of each shard", []int{0, 1, 2, 3}},
		{"again", []int{0, 1}},
		{"last added", []int{299, 298}},
		{"every third", func() (r []int) {
			for i := 4; i < 290; i += 3 {
				r = append(r, i)
			}
			return r
		}()},
		{"unknown", nil},
	}
	for _, st := range steps {
		for _, i := range st.rm {
			s.remove(conns[i])
			delete(want, conns[i].id)
		}
		if st.name == "unknown" {
			s.remove(&conn{id: 5000})
		}
		got := members()
		if len(got) != len(want) || s.len() != len(want) {
			t.Fatalf("%s: %d members, len() %d, want %d", st.name, len(got), s.len(), len(want))
		}
		for _, id := range got {
			if !want[id] {
				t.Fatalf("%s: conn %d still a member", st.name, id)
			}
		}
	}
	for _, c := range conns {
		s.remove(c)
	}
	if s.len() != 0 || len(members()) != 0 {
		t.Fatalf("not empty after removing all: len() %d", s.len())
	}
}
