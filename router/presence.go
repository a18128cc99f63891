package router

import (
	"sync"

	"github.com/imgate/imgate/storage"
)

// presence knows which agents are online, for assignment (PROTOCOL §1.2).
// engine reports each user's first connection and last disconnection
// through Presence; after a restart everyone starts offline.
type presence struct {
	mu     sync.Mutex
	agents map[uint64]*agentState // online agents (type 1)
}

type agentState struct {
	lastAssigned int64 // ms; 0: never since they came online
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
		if r.pres.agents[id.UID] == nil {
			r.pres.agents[id.UID] = &agentState{}
		}
	} else {
		delete(r.pres.agents, id.UID)
	}
}

// onlineAgents returns the online agents and when each was last assigned.
func (r *Router) onlineAgents() map[uint64]int64 {
	r.pres.mu.Lock()
	defer r.pres.mu.Unlock()
	out := make(map[uint64]int64, len(r.pres.agents))
	for uid, st := range r.pres.agents {
		out[uid] = st.lastAssigned
	}
	return out
}

func (r *Router) assigned(agent uint64, now int64) {
	r.pres.mu.Lock()
	defer r.pres.mu.Unlock()
	if st := r.pres.agents[agent]; st != nil {
		st.lastAssigned = now
	}
}
