package main

import (
	"fmt"
	"os"
	"time"
)

// runGroup: one sender and a group of -members live members; the sender
// keeps -inflight messages in flight; deliveries/s is the fan-out rate.
func runGroup(c config) (Result, error) {
	if err := checkFiles(c.members + 1); err != nil {
		return Result{}, err
	}
	s := newStats(c.part != "")
	reg := newRegistrar(c)
	nonce := c.nonce()
	group := "bg" + nonce
	cl, err := newClient(s, c.window, false)
	if err != nil {
		return Result{}, err
	}
	defer cl.close()
	for i := 0; i < c.members; i++ {
		w := &wsConn{id: i + 1, role: roleMember, group: group, userID: fmt.Sprintf("bm%s_%d", nonce, i), acking: c.ack}
		if w.token, err = reg.register(w.userID, false); err != nil {
			return Result{}, err
		}
		if err := cl.dial(source(i, c.sources), c.ws.at(i), w); err != nil {
			return Result{}, err
		}
	}
	if err := waitCount(&s.joined, int64(c.members), "members joined"); err != nil {
		return s.result("group", time.Second), err
	}
	snd := &wsConn{id: 0, role: roleMember, group: group, userID: "bgs" + nonce}
	if snd.token, err = reg.register(snd.userID, true); err != nil {
		return Result{}, err
	}
	if err := cl.dial(source(0, c.sources), c.ws.at(c.members), snd); err != nil { // the connection after the members'
		return Result{}, err
	}
	if err := waitCount(&s.joined, int64(c.members+1), "sender joined"); err != nil {
		return s.result("group", time.Second), err
	}
	// Give the join notices time to drain before the clock starts.
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	go s.progress(os.Stderr, done)
	start := time.Now()
	cl.mu.Lock()
	sender := cl.conns[len(cl.conns)-1]
	cl.mu.Unlock()
	cl.startSender(sender)
	time.Sleep(c.duration)
	cl.stop.Store(true)
	el := time.Since(start)
	close(done)
	return s.result("group", el), nil
}

// runOffline: -pairs senders each queue -messages messages for an offline
// receiver; then the receivers connect and take their queues with cmd 19
// type 0 until empty. It times the pulls. As in chat, a receiver connects
// to the target after its sender's.
func runOffline(c config) (Result, error) {
	if err := checkFiles(2 * c.pairs); err != nil {
		return Result{}, err
	}
	s := newStats(c.part != "")
	reg := newRegistrar(c)
	nonce := c.nonce()
	cl, err := newClient(s, c.window, false)
	if err != nil {
		return Result{}, err
	}
	defer cl.close()
	// The limit holds before the first sender logs in: a sender starts
	// its window at login, and the next pairs are registered meanwhile.
	cl.limit.Store(int64(c.messages))
	pullers := make([]*wsConn, c.pairs)
	for i := range pullers {
		pullers[i] = &wsConn{id: 2*i + 1, role: rolePuller, userID: fmt.Sprintf("bo%s_%d", nonce, i)}
		if pullers[i].token, err = reg.register(pullers[i].userID, true); err != nil {
			return Result{}, err
		}
		snd := &wsConn{id: 2 * i, role: roleSender, peer: pullers[i].userID, userID: fmt.Sprintf("bq%s_%d", nonce, i)}
		if snd.token, err = reg.register(snd.userID, false); err != nil {
			return Result{}, err
		}
		sndAddr, _ := c.ws.pair(i)
		if err := cl.dial(source(i, c.sources), sndAddr, snd); err != nil {
			return Result{}, err
		}
	}
	total := int64(c.pairs * c.messages)
	done := make(chan struct{})
	go s.progress(os.Stderr, done)
	if err := waitCount(&s.acks, total, "messages queued"); err != nil {
		close(done)
		return s.result("offline", time.Second), err
	}
	start := time.Now()
	for i, p := range pullers {
		_, pullAddr := c.ws.pair(i)
		if err := cl.dial(source(i, c.sources), pullAddr, p); err != nil {
			close(done)
			return Result{}, err
		}
	}
	err = waitCount(&s.drained, int64(c.pairs), "queues drained")
	el := time.Since(start)
	close(done)
	res := s.result("offline", el)
	res.PullRate = float64(res.Pulled) / el.Seconds()
	res.AckRate = 0 // the queueing phase is not what this mode times
	if res.Pulled != total {
		res.Errors = append(res.Errors, fmt.Sprintf("pulled %d of %d queued messages", res.Pulled, total))
	}
	return res, err
}

func waitCount(n interface{ Load() int64 }, want int64, what string) error {
	deadline := time.Now().Add(120 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d", what, n.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
