package router

import (
	"slices"
	"sync"

	"github.com/imgate/imgate/storage"
)

// presence knows which agents have a connection, for assignment (PROTOCOL
// §1.2). engine reports each user's first connection and last
// disconnection through Presence; after a restart everyone starts
// offline. What assignment weighs (the visitors waiting for an agent and
// when one was last assigned) is in storage, so it survives reconnects and
// restarts.
type presence struct {
	mu     sync.Mutex
	agents map[uint64]struct{} // agents (type 1) with a registered connection
}

// Presence is called by engine when uid's first connection logs in
// (online) and when their last connection closes (!online). Calls for one
// user arrive in order. Safe for concurrent use; it never blocks on I/O.
func (r *Router) Presence(id Identity, online bool) {
	if id.Type != storage.UserAgent {
		return
	}
	r.pres.mu.Lock()
	defer r.pres.mu.Unlock()
	if online {
		r.pres.agents[id.UID] = struct{}{}
	} else {
		delete(r.pres.agents, id.UID)
	}
}

// onlineAgents returns the agents that take pushes now, in uid order: a
// registered connection that is closing does not count (PROTOCOL §2).
func (r *Router) onlineAgents() []uint64 {
	r.pres.mu.Lock()
	out := make([]uint64, 0, len(r.pres.agents))
	for uid := range r.pres.agents {
		out = append(out, uid)
	}
	r.pres.mu.Unlock()
	out = slices.DeleteFunc(out, func(uid uint64) bool { return !r.hub.Online(uid) })
	slices.Sort(out)
	return out
}
