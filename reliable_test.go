package main

import (
	"regexp"
	"testing"
)

var epochOfRE = regexp.MustCompile(`"epoch":"([0-9a-f]{32})"`)

// epochOf logs in with token and returns the login data's epoch.
func (ts *testServer) epochOf(token string) string {
	ts.t.Helper()
	c := ts.dial(token)
	got := c.read()
	m := epochOfRE.FindStringSubmatch(got)
	if m == nil {
		ts.t.Fatalf("login reply without an epoch: %s", got)
	}
	c.c.Close()
	return m[1]
}

// PROTOCOL §7.7: the epoch is fixed when the store is created: the same
// after a restart, and another store has another.
func TestSection7_7_Epoch(t *testing.T) {
	ts := newTestServer(t)
	tok := ts.register("u1", 0)
	first := ts.epochOf(tok)
	ts.restart()
	if again := ts.epochOf(tok); again != first {
		t.Fatalf("epoch %s after a restart, was %s", again, first)
	}
	other := newTestServer(t)
	if e := other.epochOf(other.register("u1", 0)); e == first {
		t.Fatalf("two stores share the epoch %s", e)
	}
	// cmd 5 carries it too.
	c := ts.login(tok)
	c.send(`{"cmd":5,"token":"` + tok + `"}`)
	if m := epochOfRE.FindStringSubmatch(c.read()); m == nil || m[1] != first {
		t.Fatalf("cmd 5 reply epoch %v, want %s", m, first)
	}
}
