// Package cluster joins several imgate gateways that share one store into
// one server (PROTOCOL §8), over NATS core (github.com/nats-io/nats.go).
//
// A Node is a router.Cluster: it wraps this gateway's engine (the local
// Hub) and reaches the connections held by the other nodes. The store is
// the truth; the bus carries hints. NATS core delivers at most once, so
// nothing that must survive rides on it alone: a push another node did not
// confirm as written within PushTimeout is settled as not written, and its
// message stays in the receiver's offline queue (PROTOCOL §4.3), where the
// store also puts it should this node die first.
//
// Subjects, under Options.Prefix ("imgate"):
//
//	imgate.p             presence: deltas, snapshots, heartbeats, queries,
//	                     byes, closes, membership changes
//	imgate.n.<node>      pushes and acks for one node's connections
//	imgate.g.<gid>       a group's messages and notices; held by the nodes
//	                     with a live member (group.go)
//	imgate.r.<node>.<id> replies to that node: push outcomes, presence acks
//
// Routing is by interest. Every node knows, from presence, which nodes
// hold a connection of which user: a private push goes only to those
// nodes (one message each; usually one node), on their node subject. A
// group message is one publish on the group's subject, which only nodes
// with a live member hold. Nothing is sent per message to every node;
// presence and membership changes (a user's first connection on a node,
// or their last; a join or a leave) are. A followed push awaits the
// answer of each node that holds a followed receiver, by presence.
//
// Presence. Each node publishes, on every change of its users'
// connections, their new number (absolute, so a repeat is harmless) in a
// delta numbered by a per-process sequence; a heartbeat every
// PingInterval/4 carries the last number. A node that sees a gap, or
// hears of a node it does not know (a new process: the node id is a random
// boot id), asks that node for a snapshot, sent in chunks. A node not heard
// from for 1.5 × PingInterval is gone, and its users are offline, within
// the 2 × -ping-interval of PROTOCOL §8; one that stops cleanly says so.
// While this node's bus connection is down the other nodes count as gone
// (PROTOCOL §8: acked 10001 and queued); once it is back, nats.go has
// resubscribed, and the node sends its snapshot and asks for everyone's.
//
// A login is announced before its login reply (Announce): the delta that
// carries it asks for a reply from every node alive, and the reply waits
// for them, at most AnnounceTimeout.
package cluster
