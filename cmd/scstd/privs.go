package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/sirupsen/logrus"
)

// credentials is the identity the daemon switches to after start.
type credentials struct {
	uid, gid int
	// drop is true when we run as root and the target identity is not root.
	drop bool
}

// resolveCredentials looks up -u/-g (names or numbers). Only root changes
// identity; for anybody else the flags are accepted and ignored, as the
// daemon cannot become another user anyway.
func resolveCredentials(userName, groupName string) (*credentials, error) {
	if os.Geteuid() != 0 {
		return &credentials{uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	uid, err := lookupID(userName, func(s string) (string, error) {
		u, err := user.Lookup(s)
		if err != nil {
			return "", err
		}
		return u.Uid, nil
	})
	if err != nil {
		return nil, fmt.Errorf("-u %q: %w", userName, err)
	}
	gid, err := lookupID(groupName, func(s string) (string, error) {
		g, err := user.LookupGroup(s)
		if err != nil {
			return "", err
		}
		return g.Gid, nil
	})
	if err != nil {
		return nil, fmt.Errorf("-g %q: %w", groupName, err)
	}
	return &credentials{uid: uid, gid: gid, drop: uid != 0 || gid != 0}, nil
}

// lookupID accepts a number as is and resolves a name with lookup.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative id %d", n)
		}
		return n, nil
	}
	id, err := lookup(s)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(id)
}

// dropPrivileges switches to cred once the listening socket and the FUSE
// mount are open. On Linux, Go applies setuid/setgid to every thread.
func dropPrivileges(cred *credentials, log *logrus.Entry) error {
	if !cred.drop {
		return nil
	}
	if err := syscall.Setgroups([]int{cred.gid}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(cred.gid); err != nil {
		return fmt.Errorf("setgid %d: %w", cred.gid, err)
	}
	if err := syscall.Setuid(cred.uid); err != nil {
		return fmt.Errorf("setuid %d: %w", cred.uid, err)
	}
	// Refuse to run half-privileged if the switch did not take.
	if os.Geteuid() != cred.uid || os.Getegid() != cred.gid {
		return fmt.Errorf("privilege drop did not take effect (euid %d egid %d)", os.Geteuid(), os.Getegid())
	}
	log.WithFields(logrus.Fields{"uid": cred.uid, "gid": cred.gid}).Info("dropped privileges")
	return nil
}
