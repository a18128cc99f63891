package router

// Cluster is a Hub that spans several gateways sharing one store (PROTOCOL
// §8): Deliver, Ack, Disconnect and Online reach the user's connections on
// every node, and presence is cluster-wide. SetHub recognises it; without
// one the router serves one node. All methods are safe for concurrent use
// and never block on I/O.
type Cluster interface {
	Hub
	// DeliverEach is Deliver to each of uids, no connection skipped, in
	// one message per node that holds any of them; uids[i] with i <
	// len(trk) is followed by &trk[i], the others are not followed.
	DeliverEach(uids []uint64, frame []byte, trk []Tracker)
	// DeliverGroup is DeliverEach for members of group gid (PROTOCOL
	// §5): one publish that reaches only the nodes with live members.
	DeliverGroup(gid uint64, uids []uint64, frame []byte, trk []Tracker)
	// Membership tells every node that uid joined (member) or left gid,
	// once the store has it.
	Membership(uid, gid uint64, member bool)
	// Presence hears of every change of this node's connections of id:
	// conns is how many are registered after it. Calls for one user
	// arrive in order. It must not block.
	Presence(id Identity, conns int)
	// Announce makes a login of id known on every node before its login
	// reply is sent (PROTOCOL §8); done runs once they know it, or once a
	// bounded wait for them ended. ok is false when the user holds the
	// cluster-wide connection cap already: the login is refused. The
	// login's owner calls end once its connection is registered, or
	// abandoned.
	Announce(id Identity, done func(ok bool, end func()))
	// DisconnectCounted closes uid's connections on every node (those of
	// terminal only, when it is not "") and counts them, waiting a bounded
	// time for the other nodes' counts: it blocks, so only the HTTP
	// API's logout uses it (PROTOCOL §1.5).
	DisconnectCounted(uid uint64, terminal string, code uint16, reason string) int
	// RemoteAgents appends to dst the agents (type 1) with a live
	// connection on another node.
	RemoteAgents(dst []uint64) []uint64
}

// Announce is called by engine for a login whose token checked out, before
// the connection registers: on a Cluster it waits for every node to know
// of it (PROTOCOL §8: a connection is online cluster-wide before its
// login reply); on one node done runs at once with ok true. done runs on
// another goroutine, or on this one, and must not block; see
// Cluster.Announce for ok and end.
func (r *Router) Announce(id Identity, done func(ok bool, end func())) {
	if r.cluster == nil {
		done(true, noEnd)
		return
	}
	r.cluster.Announce(id, done)
}

func noEnd() {}

// deliverGroup sends frame to the live connections of every uid, members
// of gid, the first len(trk) followed by trk (Cluster.DeliverGroup).
func (r *Router) deliverGroup(gid uint64, uids []uint64, frame []byte, trk []Tracker) {
	if r.cluster != nil {
		r.cluster.DeliverGroup(gid, uids, frame, trk)
		return
	}
	for i, uid := range uids {
		var t *Tracker
		if i < len(trk) {
			t = &trk[i]
		}
		r.hub.Deliver(uid, frame, nil, t)
	}
}
