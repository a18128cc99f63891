//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package pebble

// lockHolder reports no holder: where Pebble does not lock with fcntl
// (pebble: vfs/file_lock_*.go) a refused lock keeps Pebble's own error.
func lockHolder(path string) (pid int, held bool) { return 0, false }
