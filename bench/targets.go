package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// targets are the gateways a run spreads its load over, in the order
// given: several nodes of a cluster with no balancer in front, or one
// gateway. Never empty once parsed.
type targets []string

// at returns the target of the i-th connection or request: target i mod n.
func (t targets) at(i int) string { return t[i%len(t)] }

// pair returns where pair i of the chat and offline modes connects: the
// sender to target i, the receiver to target i+1. With two targets or
// more the two sides are on different nodes, so every message crosses
// nodes; with one, both are on it.
func (t targets) pair(i int) (sender, receiver string) { return t.at(i), t.at(i + 1) }

// parseTargets splits a comma-separated flag value and normalizes each
// element with norm. An empty element or the same target twice (after
// norm) is an error that names the flag.
func parseTargets(name, value string, norm func(string) (string, error)) (targets, error) {
	var t targets
	seen := map[string]int{}
	for i, el := range strings.Split(value, ",") {
		el = strings.TrimSpace(el)
		if el == "" {
			return nil, fmt.Errorf("-%s %q: element %d is empty", name, value, i+1)
		}
		n, err := norm(el)
		if err != nil {
			return nil, fmt.Errorf("-%s: element %d: %w", name, i+1, err)
		}
		if j, ok := seen[n]; ok {
			return nil, fmt.Errorf("-%s: elements %d and %d are both %s", name, j+1, i+1, n)
		}
		seen[n] = i
		t = append(t, n)
	}
	return t, nil
}

// wsTarget checks a -ws element: host:port, as the dialer takes it.
func wsTarget(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("%q is not host:port: %w", s, err)
	}
	return s, nil
}

var errHTTPScheme = errors.New("only http:// is supported (no TLS)")

// httpTarget normalizes a -http element to host[:port]: the address
// itself, as before, or an http:// URL of it with no path.
func httpTarget(s string) (string, error) {
	addr := s
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if !strings.EqualFold(scheme, "http") {
			return "", fmt.Errorf("%q: %w", s, errHTTPScheme)
		}
		addr = strings.TrimSuffix(rest, "/")
	}
	if addr == "" || strings.ContainsAny(addr, "/?#@") {
		return "", fmt.Errorf("%q is not host:port or http://host:port", s)
	}
	return addr, nil
}
