// Package storage is imgate's durable state on Pebble: users, connection
// tokens and, in later layers, conversations, offline queues, contacts and
// counters. It imports nothing of imgate and no Pebble type leaves it.
//
// # Concurrency
//
// A DB is safe for concurrent use. Writes that must agree with a read (a
// token bound to one user, a user id mapped to one uid) hold a striped lock
// over the keys they touch for the read and the commit together; writes to
// different users proceed in parallel and Pebble groups their WAL syncs.
// Values returned by a DB are copies the caller owns.
//
// # Key layout
//
// One prefix byte and a '|' name each keyspace. Integers are big-endian and
// fixed width so that byte order is numeric order and every read is a point
// lookup or a bounded LowerBound/UpperBound scan.
//
//	u|uid(8B BE)        -> user record (see user.go: encodeUser)
//	i|<user id>         -> uid(8B BE)
//	t|<token>           -> uid(8B BE) | expireAt ms(8B BE)
//
// A user's uid is a dense internal number assigned at first registration;
// the largest u| key gives the next one on open, so no counter is written.
// The user id is the protocol's string id (1-64 bytes of [A-Za-z0-9_.@:-]).
//
// # Changing the layout
//
// The layout is on disk in every deployment. A change needs a migration
// note here and a version bump of the record it changes (user records carry
// a version byte); keys are never reinterpreted in place.
package storage
