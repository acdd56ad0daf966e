// Command volume-probe writes and reads a file as the pod's user: the workload of the real
// node's volume tests (tests/node/test_real_volumes.py), which pack it into an image of its own.
//
//	volume-probe write FILE TEXT   create FILE with TEXT, then print the uid, the groups and FILE's folder
//	volume-probe read FILE         print FILE
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: volume-probe write FILE TEXT | read FILE")
	}
	switch file := os.Args[2]; os.Args[1] {
	case "write":
		if len(os.Args) != 4 {
			fail("usage: volume-probe write FILE TEXT")
		}
		if err := os.WriteFile(file, []byte(os.Args[3]), 0o640); err != nil {
			fail(err.Error())
		}
		groups, _ := os.Getgroups()
		folder, err := os.Stat(filepath.Dir(file))
		if err != nil {
			fail(err.Error())
		}
		owner := folder.Sys().(*syscall.Stat_t)
		fmt.Printf("uid=%d gid=%d groups=%v folder-gid=%d folder-mode=%v\n",
			os.Getuid(), os.Getgid(), groups, owner.Gid, folder.Mode())
	case "read":
		text, err := os.ReadFile(file)
		if err != nil {
			fail(err.Error())
		}
		fmt.Printf("%s", text)
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(1)
}
