//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package pebble

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// lockHolder reports whether another process holds a lock on the file at
// path that keeps Pebble from locking it, and that process's pid (0 when
// the system does not say, as for a lock over NFS).
//
// Closing the file it opens drops every fcntl lock this process holds on
// the file, so call it only after Pebble's lock was refused: the lock is
// then another process's, and this process holds none.
func lockHolder(path string) (pid int, held bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart} // Start 0, Len 0: the whole file, as Pebble locks it
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return 0, false
	}
	return int(lk.Pid), lk.Type != unix.F_UNLCK
}
