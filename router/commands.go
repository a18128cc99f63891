package router

import "github.com/imgate/imgate/codec"

// Commands returns the command table as routed (PROTOCOL §3): every request
// command r handles, mapped to the command of its reply (11 → 12, 13 → 13).
// Any other cmd is answered 10017 with command 0. The map is new on every
// call. Safe for concurrent use: the table is fixed by New.
func (r *Router) Commands() map[codec.Cmd]codec.Cmd {
	m := make(map[codec.Cmd]codec.Cmd)
	for i := range r.table {
		if r.table[i].handle != nil {
			m[codec.Cmd(i)] = respOf(codec.Cmd(i))
		}
	}
	return m
}
