package pebble

import "github.com/cockroachdb/pebble/v2/vfs"

func memFS() vfs.FS { return vfs.NewMem() }
