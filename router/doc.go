// Package router holds imgate's chat semantics: the command table, the
// handlers and the user services behind the HTTP API. It sees packets and
// users, never sockets: engine implements the Session and Hub interfaces
// declared here and root main.go wires the two.
//
// # Concurrency
//
// Handle runs on the engine's event loop. Commands that touch no disk
// (heartbeat, auth, close) are answered there, inside Handle. The others are
// copied and queued to a worker picked by the caller's uid, so one user's
// requests run in the order they arrived and a slow disk never stalls a
// loop. Worker queues are bounded; a full queue answers 10028.
//
// Router methods are safe for concurrent use unless their doc says
// otherwise.
package router
