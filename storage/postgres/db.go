package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/imgate/imgate/storage"
)

// Options configures a DB. The zero value is usable.
type Options struct {
	// Logger receives the store's lifecycle and error lines; nil discards
	// them.
	Logger *slog.Logger
	// Now is the clock of the expiry of pending pushes; nil means
	// time.Now. Tests inject their own.
	Now func() time.Time
	// MaxConns caps the pool's connections to the server; 0 means 16.
	MaxConns int32
	// Commits, if set, is told of every commit of the committer that
	// carried operations (their number and the transaction's duration);
	// nil observes nothing.
	Commits storage.CommitObserver
}

// DB is storage.Store on PostgreSQL. Create it with Open and close it with
// Close.
type DB struct {
	pool  *pgxpool.Pool
	log   *slog.Logger
	now   func() time.Time
	epoch string

	groups groupCache // group.go
	acks   ackQueue   // ack.go

	q      commitQueue
	cstats struct{ ops, batches atomic.Uint64 }
	// commits is Options.Commits.
	commits storage.CommitObserver
	stop    chan struct{}
	wg      sync.WaitGroup

	assignMu sync.Mutex // this process's assigners queue here (LockAssignment)

	// ctx is the committer's; Close cancels it when the server does not
	// let the queued work finish.
	ctx    context.Context
	cancel context.CancelFunc

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ storage.Store = (*DB)(nil)

// Open connects to the database at url (a postgres:// URL or a libpq
// key=value string), creates or migrates its schema (migrate.go) and starts
// the committer. Commits are synchronous (synchronous_commit=on whatever
// the server's default): a done callback runs after the commit is on the
// server's disk.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	// The URL's application_name and pool_max_conns win over ours.
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "imgate"
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = 16
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	db := &DB{log: opts.Logger, now: opts.Now, stop: make(chan struct{}), commits: opts.Commits}
	db.ctx, db.cancel = context.WithCancel(context.Background())
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	if db.now == nil {
		db.now = time.Now
	}
	if db.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := db.pool.Ping(ctx); err != nil {
		db.pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.pool.Close()
		return nil, err
	}
	if db.epoch, err = db.loadEpoch(ctx); err != nil {
		db.pool.Close()
		return nil, err
	}
	if err := db.ensureAssignmentRow(ctx); err != nil {
		db.pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := db.recoverPending(ctx); err != nil {
		db.pool.Close()
		return nil, err
	}
	db.q.init()
	db.wg.Add(1)
	go db.commitLoop()
	return db, nil
}

// loadEpoch reads the store's epoch, drawing it on first use.
func (db *DB) loadEpoch(ctx context.Context) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO meta (name, value) VALUES ('epoch', $1) ON CONFLICT (name) DO NOTHING`, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("postgres: epoch: %w", err)
	}
	var e string
	if err := db.pool.QueryRow(ctx, `SELECT value FROM meta WHERE name = 'epoch'`).Scan(&e); err != nil {
		return "", fmt.Errorf("postgres: epoch: %w", err)
	}
	return e, nil
}

// Epoch identifies this store (PROTOCOL §7.7).
func (db *DB) Epoch() string { return db.epoch }

// closeGrace is how long Close lets the committer finish what is queued
// before it cancels the work in flight: a server that does not answer
// must not hold a gateway's shutdown.
const closeGrace = 5 * time.Second

// Close stops the committer once the operations queued before it are
// committed, or failed with ErrClosed past closeGrace, and closes the
// pool. Calls after the first return nil.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		db.q.mu.Lock()
		db.q.closed = true
		db.q.cond.Broadcast()
		db.q.mu.Unlock()
		close(db.stop)
		stopped := make(chan struct{})
		go func() { db.wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
			db.cancel()
			db.pool.Close()
		case <-time.After(closeGrace):
			db.log.Warn("closing the store: the server did not finish the queued work; failing it", "grace", closeGrace)
			db.cancel()
			<-stopped
			// Closing a connection says goodbye to the server and waits
			// for it (pgxpool: up to 15 s): not for a server that hangs.
			go db.pool.Close()
		}
	})
	return nil
}

// Ping reports whether the store is open and its server answers.
func (db *DB) Ping() error {
	if db.closed.Load() {
		return storage.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.pool.Ping(ctx)
}

// CommitStats returns the committer's counters since Open.
func (db *DB) CommitStats() storage.CommitStats {
	return storage.CommitStats{Ops: db.cstats.ops.Load(), Batches: db.cstats.batches.Load()}
}

// queryTimeout bounds a read; the committer's transactions have their own.
const queryTimeout = 30 * time.Second

// readCtx is the context of one read outside the committer.
func readCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), queryTimeout)
}

// notFound maps pgx's "no rows" to storage.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	return err
}
