package pebble

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// lockFileName is the file in a data directory that Pebble's Open locks
// (fcntl F_SETLK, a write lock on the whole file) for as long as the DB is
// open, so that one process at a time uses the directory (pebble:
// open.go, LockDirectory; internal/base/filenames.go, FileTypeLock).
const lockFileName = "LOCK"

// openError is the error of Open when pebble.Open of dir failed with err.
// When another process holds dir's lock file it says so, naming the
// directory, the lock file and, where the system tells, the holder's pid;
// Pebble's error stays wrapped (errors.Is(err, syscall.EAGAIN) holds).
func openError(dir string, err error) error {
	lock := filepath.Join(dir, lockFileName)
	if lockRefused(err) {
		if pid, held := lockHolder(lock); held {
			who := "another imgate?"
			if pid > 0 {
				who = fmt.Sprintf("pid %d, another imgate?", pid)
			}
			return fmt.Errorf("storage: open %s: the data directory is held by another process (%s): its lock file %s is locked: %w", dir, who, lock, err)
		}
	}
	return fmt.Errorf("storage: open %s: %w", dir, err)
}

// lockRefused reports whether err can be the refusal of Pebble's lock:
// fcntl's EAGAIN (EACCES on some systems), which Pebble returns bare. An
// error of a path (*fs.PathError) is a file operation's, such as creating
// the lock file without permission, not the lock's. lockHolder then asks
// the lock itself.
func lockRefused(err error) bool {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return false
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EACCES)
}
