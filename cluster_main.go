package main

import (
	"fmt"
	"log/slog"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/imgate/imgate/cluster"
)

// embeddedNATS is the in-process NATS server of -nats embedded.
type embeddedNATS struct{ ns *natsserver.Server }

func (e *embeddedNATS) stop() {
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

// pushEnvelope is what a push adds to a client's message on the bus (the
// envelope of the frame, the receivers' ids): -max-message-size and this
// must fit the NATS servers' max_payload.
const pushEnvelope = 64 << 10

// joinCluster connects this gateway to the others over NATS (cfg.NATS)
// and makes the cluster node the router's hub (PROTOCOL §8). The
// subjects are under -nats-prefix and the store's epoch (§7.7): clusters
// on different databases never hear each other, even on one NATS account
// with one prefix.
func (s *server) joinCluster(cfg config, log *slog.Logger) error {
	if cfg.NATSPrefix == "" {
		cfg.NATSPrefix = cluster.DefaultPrefix
	}
	if !cluster.ValidPrefix(cfg.NATSPrefix) {
		return fmt.Errorf("-nats-prefix %q: want dot-separated tokens of [A-Za-z0-9_-], e.g. imgate or acme.chat", cfg.NATSPrefix)
	}
	epoch := s.db.Epoch()
	if len(epoch) > 16 {
		epoch = epoch[:16]
	}
	urls := cfg.NATS
	var extra []nats.Option
	if cfg.NATS == "embedded" {
		ns, err := natsserver.NewServer(&natsserver.Options{DontListen: true, NoSigs: true, NoLog: true})
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		ns.Start()
		s.nats = &embeddedNATS{ns}
		if !ns.ReadyForConnections(10 * time.Second) {
			return fmt.Errorf("embedded nats: not ready after 10s")
		}
		urls, extra = "", []nats.Option{nats.InProcessServer(ns)}
	}
	node, err := cluster.Dial(urls, s.engine, cluster.Options{
		Logger:          log.With("component", "cluster"),
		Prefix:          cfg.NATSPrefix + ".s" + epoch,
		PingInterval:    cfg.PingInterval,
		MaxConnsPerUser: cfg.MaxConnsUser,
		UserGroups:      s.db.UserGroups,
	}, extra...)
	if err != nil {
		return err
	}
	if max := node.MaxPayload(); int64(cfg.MaxMessageSize)+pushEnvelope > max {
		node.Close()
		return fmt.Errorf("-max-message-size %d: the NATS servers carry at most %d bytes a message (max_payload), and a push needs %d more: lower -max-message-size or raise max_payload", cfg.MaxMessageSize, max, pushEnvelope)
	}
	s.node = node
	s.router.SetHub(node)
	return nil
}
