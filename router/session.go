package router

// Identity is the user a connection acts as, fixed at login for the
// connection's whole life (PROTOCOL §2).
type Identity struct {
	UID uint64 // storage's internal id; the registry key
	ID  string // the protocol's user id
}

// Session is the router's view of one live connection. engine implements
// it. All methods are safe for concurrent use.
type Session interface {
	// Identity returns the user the connection acts as; zero before login.
	Identity() Identity
	// Send queues one or more complete frames for the connection without
	// blocking. The router gives up frame: it must not be modified after.
	// Send reports false if the connection is gone or over its output cap.
	Send(frame []byte) bool
	// Close sends a CLOSE frame with status code and reason (at most 123
	// bytes) after everything already queued, then ends the connection.
	Close(code uint16, reason string)
}

// Hub reaches the live connections of any user. engine implements it.
// All methods are safe for concurrent use and never block on I/O.
type Hub interface {
	// Deliver queues frame to every live connection of uid but skip (nil:
	// none) and reports how many accepted it. frame is shared and
	// read-only.
	Deliver(uid uint64, frame []byte, skip Session) int
	// Disconnect closes every live connection of uid with code and reason
	// and reports how many it closed.
	Disconnect(uid uint64, code uint16, reason string) int
	// Online reports whether uid has at least one live connection.
	Online(uid uint64) bool
}

// LoginResult is what Login reports to the connection that asked.
type LoginResult struct {
	OK       bool
	Identity Identity
	// Frame is the login result frame (command 6) to send first.
	Frame []byte
}
