// Command bench is imgate's load generator. It drives a running gateway
// over loopback with the real protocol: users registered through the HTTP
// API, WebSocket clients on gnet event loops (no goroutine per
// connection), latencies in log-linear histograms.
//
//	go run ./bench chat -pairs 200 -duration 10s
//	go run ./bench connect -conns 10000 -rate 20000 -server-pid $(pgrep imgate)
//	go run ./bench http -concurrency 64 -duration 10s
//
// The chat mode also drives Centrifugo v6 (bench/centrifugo.sh runs one),
// with the same load and figures over its client protocol:
//
//	go run ./bench chat -proto centrifugo -ws 127.0.0.1:18000 -pairs 200 -rate 20000
//
// -ws and -http take a comma-separated list to load several gateways with
// no balancer in front; connections and requests go round-robin:
//
//	go run ./bench chat -ws 127.0.0.1:8889,127.0.0.1:8899 -http 127.0.0.1:8082,127.0.0.1:8092
//
// Every mode prints a progress line a second and a final table (-json for
// JSON). Errors are counted by status and close code, never hidden; a run
// with errors says so and exits 1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

type config struct {
	ws, http       targets
	apiKey         string
	pairs, window  int
	conns, members int
	messages       int
	rate           float64
	duration       time.Duration
	hbInterval     time.Duration
	sources        int
	concurrency    int
	healthz        bool
	serverPID      int
	ack            bool
	jsonOut        bool
	procs          int
	part           string // set in child processes of -procs
	proto          string // protoImgate or protoCentrifugo
	cfSecret       string // centrifugo: HMAC key of the connection tokens
	out            io.Writer
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: bench connect|chat|group|offline|http [flags]   (bench MODE -h for flags)")
		fmt.Fprintln(os.Stderr, "       bench median RESULT.json...   (medians of -json results)")
		os.Exit(2)
	}
	if os.Args[1] == "median" {
		if err := runMedian(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		return
	}
	res, err := run(os.Args[1], os.Args[2:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if len(res.ReplyCodes)+len(res.CloseCodes)+len(res.Errors) > 0 {
		os.Exit(1)
	}
}

func parse(mode string, args []string, out io.Writer) (config, error) {
	var c config
	var wsFlag, httpFlag string
	fs := flag.NewFlagSet("bench "+mode, flag.ContinueOnError)
	fs.StringVar(&wsFlag, "ws", "127.0.0.1:8889", "gateway WebSocket address host:port, or a comma-separated list of gateways with no balancer in front: "+
		"the i-th connection goes to target i mod n, except in chat and offline, where pair i's sender goes to target i and its receiver to target i+1, "+
		"so that with two targets or more every message is delivered across nodes")
	fs.StringVar(&httpFlag, "http", "127.0.0.1:8082", "gateway HTTP API address host:port or http://host:port, or a comma-separated list: "+
		"the i-th request (user registration, http mode) goes to target i mod n")
	fs.StringVar(&c.apiKey, "api-key", "", "HTTP API key, if the gateway requires one")
	fs.IntVar(&c.pairs, "pairs", 200, "chat, offline: sender/receiver pairs (with several -ws targets, the two sides of a pair are on different ones)")
	fs.IntVar(&c.window, "inflight", 16, "chat: messages in flight per sender")
	fs.IntVar(&c.conns, "conns", 1000, "connect: connections to open")
	fs.IntVar(&c.members, "members", 500, "group: live members of the group")
	fs.IntVar(&c.messages, "messages", 1000, "offline: messages queued per receiver")
	fs.Float64Var(&c.rate, "rate", 0, "chat: messages/s in all (0: as fast as acks allow); connect: connections/s (0: unpaced)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to measure")
	fs.DurationVar(&c.hbInterval, "heartbeat", 20*time.Second, "connect: heartbeat interval per connection")
	fs.IntVar(&c.sources, "sources", 8, "loopback source addresses 127.0.0.1..N, so ephemeral ports last")
	fs.IntVar(&c.concurrency, "concurrency", 64, "http: requests in flight")
	fs.BoolVar(&c.healthz, "healthz", false, "http: GET /healthz instead of initUser: the HTTP ceiling of client and machine")
	fs.IntVar(&c.serverPID, "server-pid", 0, "connect: the gateway's pid, to report its RSS per connection")
	fs.BoolVar(&c.jsonOut, "json", false, "print the result as JSON")
	fs.BoolVar(&c.ack, "ack", false, "chat, group: receivers log in with ack=1 and acknowledge the highest seq received with cmd 21 after each read (PROTOCOL §7.2)")
	fs.IntVar(&c.procs, "procs", 1, "spread the connections over this many processes (each may hold at most its open-file limit)")
	fs.StringVar(&c.part, "part", "", "internal: the part a child process of -procs runs")
	fs.StringVar(&c.proto, "proto", protoImgate, "chat: the server's protocol, imgate or centrifugo (Centrifugo v6's JSON client protocol at ws://-ws"+cfPath+
		": no registration, HS256 tokens made here with -centrifugo-secret; each pair's receiver subscribes to a channel its sender publishes to)")
	fs.StringVar(&c.cfSecret, "centrifugo-secret", cfSecret, "chat with -proto centrifugo: the server's client.token.hmac_secret_key (bench/centrifugo.sh configures the default)")
	c.out = out
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.sources < 1 || c.sources > 254 {
		return c, errors.New("-sources must be 1..254")
	}
	switch c.proto {
	case protoImgate:
	case protoCentrifugo:
		if mode != "chat" {
			return c, fmt.Errorf("-proto centrifugo: only the chat mode speaks Centrifugo's protocol, not %s", mode)
		}
		if c.ack {
			return c, errors.New("-proto centrifugo: -ack is imgate's (cmd 21); Centrifugo has no per-message acknowledgement")
		}
	default:
		return c, fmt.Errorf("-proto %q: imgate or centrifugo", c.proto)
	}
	var err error
	if c.ws, err = parseTargets("ws", wsFlag, wsTarget); err != nil {
		return c, err
	}
	if c.http, err = parseTargets("http", httpFlag, httpTarget); err != nil {
		return c, err
	}
	return c, nil
}

// run executes one mode and prints its result.
func run(mode string, args []string, out io.Writer) (Result, error) {
	c, err := parse(mode, args, out)
	if err != nil {
		return Result{}, err
	}
	var res Result
	if c.procs > 1 {
		if res, err = runProcs(mode, args, c); err != nil {
			return res, err
		}
		c.nameTargets(mode, &res)
		res.print(out, c.jsonOut)
		return res, nil
	}
	switch mode {
	case "chat":
		res, err = runChat(c)
	case "connect":
		res, err = runConnect(c)
	case "http":
		res, err = runHTTP(c)
	case "group":
		res, err = runGroup(c)
	case "offline":
		res, err = runOffline(c)
	default:
		return Result{}, fmt.Errorf("unknown mode %q (connect, chat, group, offline, http)", mode)
	}
	if err != nil {
		return res, err
	}
	c.nameTargets(mode, &res)
	res.print(out, c.jsonOut)
	return res, nil
}

// nameTargets puts the targets a mode used in its result.
func (c config) nameTargets(mode string, res *Result) {
	if mode != "http" {
		res.WSTargets = c.ws
	}
	if c.proto == protoCentrifugo {
		res.Proto = protoCentrifugo // no HTTP targets: nothing registered
		return
	}
	res.HTTPTargets = c.http
}

// checkFiles fails clearly when this process may not open n sockets.
func checkFiles(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	// Raise the soft limit as far as the hard one allows.
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	const reserve = 64 // stdio, the HTTP client, gnet's pollers
	if uint64(n+reserve) > lim.Cur {
		return fmt.Errorf("%d connections need %d open files but this process may hold %d: use -procs K to spread them over K processes", n, n+reserve, lim.Cur)
	}
	return nil
}

func source(i, n int) net.IP { return net.IPv4(127, 0, 0, byte(1+i%n)) }

// runChat: pairs of users; each sender writes to its receiver with a
// bounded window in flight (or at -rate in all); ack and delivery latency.
// With -proto centrifugo the users are not registered but hold tokens made
// here, and a receiver is logged in once subscribed to its channel.
func runChat(c config) (Result, error) {
	if err := checkFiles(2 * c.pairs); err != nil {
		return Result{}, err
	}
	s := newStats(c.part != "")
	reg := newRegistrar(c)
	nonce := c.nonce()
	cf := c.proto == protoCentrifugo
	cl, err := newClient(s, c.window, c.rate > 0)
	if err != nil {
		return Result{}, err
	}
	cl.cf = cf
	defer cl.close()
	senders := make([]*wsConn, c.pairs)
	// Receivers first, all logged in before any sender starts, so every
	// message finds its receiver online. The two sides of a pair are on
	// different targets when there are several: cross-node delivery is
	// what a cluster run measures.
	for i := 0; i < c.pairs; i++ {
		_, rcvAddr := c.ws.pair(i)
		rcv := &wsConn{id: 2*i + 1, role: roleReceiver, userID: fmt.Sprintf("br%s_%d", nonce, i), acking: c.ack}
		senders[i] = &wsConn{id: 2 * i, role: roleSender, userID: fmt.Sprintf("bs%s_%d", nonce, i), peer: rcv.userID}
		for _, w := range []*wsConn{rcv, senders[i]} {
			if cf {
				// The receiver's personal channel: its user id.
				w.token, w.channel = cfToken(c.cfSecret, w.userID), rcv.userID
				continue
			}
			if w.token, err = reg.register(w.userID, w.role == roleReceiver); err != nil {
				return Result{}, err
			}
		}
		if err := cl.dial(source(i, c.sources), rcvAddr, rcv); err != nil {
			return Result{}, err
		}
	}
	if err := waitLogins(s, int64(c.pairs)); err != nil {
		return s.result("chat", time.Second), err
	}
	for i, snd := range senders {
		sndAddr, _ := c.ws.pair(i)
		if err := cl.dial(source(i, c.sources), sndAddr, snd); err != nil {
			return Result{}, err
		}
	}
	if err := waitLogins(s, int64(2*c.pairs)); err != nil {
		return s.result("chat", time.Second), err
	}
	done := make(chan struct{})
	go s.progress(os.Stderr, done)
	var before promHist
	scraped := false
	if !cf { // the server-side ack histogram is imgate's
		before, scraped = reg.scrapeAckHist()
	}
	start := time.Now()
	if c.rate > 0 {
		go pace(cl, c.rate, done)
	}
	time.Sleep(c.duration)
	cl.stop.Store(true)
	el := time.Since(start)
	close(done)
	res := s.result("chat", el)
	if scraped {
		if after, ok := reg.scrapeAckHist(); ok {
			res.ServerAck = serverLatency(before, after)
		}
	}
	return res, nil
}

// paceStep is how often pace releases messages: 1 ms keeps a fixed rate
// close to evenly spread arrivals, so latency at a rate measures the
// server, not bursts of the pacer's own making.
const paceStep = time.Millisecond

// pace spreads rate messages a second over the senders in paceStep steps,
// catching up by the clock when a tick comes late.
func pace(cl *client, rate float64, done <-chan struct{}) {
	t := time.NewTicker(paceStep)
	defer t.Stop()
	credit, i := 0.0, 0
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			credit += rate * now.Sub(last).Seconds()
			last = now
		}
		cl.mu.Lock()
		conns := cl.conns
		cl.mu.Unlock()
		for ; credit >= 1; credit-- {
			// Receivers were dialed first: senders are the second half.
			half := len(conns) / 2
			cl.pace(conns[half+i%half])
			i++
		}
	}
}

func waitLogins(s *stats, n int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for s.logins.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d connections logged in", s.logins.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// runConnect opens conns connections (reusing one token per 100 of them,
// as tabs of one user) at -rate, holds them with heartbeats and reports the
// login rate and, with -server-pid, the server's RSS per connection.
// connsPerUser is how many connections of connect mode share a user.
const connsPerUser = 50

func runConnect(c config) (Result, error) {
	if err := checkFiles(c.conns); err != nil {
		return Result{}, err
	}
	s := newStats(c.part != "")
	reg := newRegistrar(c)
	nonce := c.nonce()
	rssBefore := rss(c.serverPID)
	cl, err := newClient(s, 0, true)
	if err != nil {
		return Result{}, err
	}
	defer cl.close()
	// 50 connections a user: within the server's per-user cap (64).
	tokens := map[int]string{}
	for i := 0; i < (c.conns+connsPerUser-1)/connsPerUser; i++ {
		if tokens[i], err = reg.register(fmt.Sprintf("bc%s_%d", nonce, i), false); err != nil {
			return Result{}, err
		}
	}
	done := make(chan struct{})
	go s.progress(os.Stderr, done)
	start := time.Now()
	// Dial from several goroutines: a TCP connect blocks, and one dialer
	// would bound the upgrade rate by its round trips, not the server.
	const dialers = 16
	next := make(chan int)
	var dialErr error
	var dialMu sync.Mutex
	var dwg sync.WaitGroup
	for d := 0; d < dialers; d++ {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for i := range next {
				w := &wsConn{id: i, token: tokens[i/connsPerUser]}
				if err := cl.dial(source(i, c.sources), c.ws.at(i), w); err != nil {
					dialMu.Lock()
					if dialErr == nil {
						dialErr = fmt.Errorf("connection %d: %w", i, err)
					}
					dialMu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < c.conns; i++ {
		if c.rate > 0 {
			if ahead := time.Duration(float64(i)/c.rate*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		next <- i
	}
	close(next)
	dwg.Wait()
	if dialErr != nil {
		close(done)
		return s.result("connect", time.Since(start)), dialErr
	}
	err = waitLogins(s, int64(c.conns))
	loginEl := time.Duration(s.lastLogin.Load() - start.UnixNano())
	// Hold them, with heartbeats, for the measured duration.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.hbInterval)
		defer t.Stop()
		end := time.After(c.duration)
		for {
			select {
			case <-end:
				return
			case <-t.C:
				cl.mu.Lock()
				for _, gc := range cl.conns {
					if w, ok := gc.Context().(*wsConn); ok {
						heartbeat(gc, w.mask)
					}
				}
				cl.mu.Unlock()
			}
		}
	}()
	wg.Wait()
	close(done)
	res := s.result("connect", time.Since(start))
	if loginEl > 0 {
		res.LoginRate = float64(res.Logins) / loginEl.Seconds()
	}
	if after := rss(c.serverPID); after > 0 && rssBefore > 0 && res.Logins > 0 {
		res.RSSPerConn = float64(after-rssBefore) / float64(res.Logins)
	}
	return res, err
}

// rss reads a process's resident set size in bytes, 0 if unknown.
func rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}
