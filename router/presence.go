package router

import (
	"slices"
	"sync"

	"github.com/imgate/imgate/storage"
)

// presence knows which agents have a connection, for assignment (PROTOCOL
// §1.2). engine reports each change of a user's connections through
// Presence; after a restart everyone starts offline. In a cluster the
// other nodes' agents come from the Cluster. What assignment weighs (the visitors waiting for an agent and
// when one was last assigned) is in storage, so it survives reconnects and
// restarts.
type presence struct {
	mu     sync.Mutex
	agents map[uint64]struct{} // agents (type 1) with a registered connection
}

// Presence is called by engine whenever the number of id's registered
// connections changes: conns is the number after the change. Calls for one
// user arrive in order. Safe for concurrent use; it never blocks on I/O.
func (r *Router) Presence(id Identity, conns int) {
	if r.cluster != nil {
		r.cluster.Presence(id, conns)
	}
	if id.Type != storage.UserAgent {
		return
	}
	r.pres.mu.Lock()
	defer r.pres.mu.Unlock()
	if conns > 0 {
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
	if r.cluster != nil {
		// Agents on other nodes take part (PROTOCOL §8); the store's
		// assignment lock makes the choice atomic across nodes.
		out = r.cluster.RemoteAgents(out)
		slices.Sort(out)
		out = slices.Compact(out)
	}
	out = slices.DeleteFunc(out, func(uid uint64) bool { return !r.hub.Online(uid) })
	slices.Sort(out)
	return out
}
