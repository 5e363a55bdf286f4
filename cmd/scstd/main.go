package main

import (
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/sirupsen/logrus"
	_ "github.com/urfave/cli/v2"
	_ "golang.org/x/sys/unix"
)

func main() {}
