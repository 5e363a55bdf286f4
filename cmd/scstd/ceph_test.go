package main

import (
	"strings"
	"testing"
)

func TestCephFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    cephOptions
		wantErr string // "" = no error; for --ceph-conf it depends on the build
	}{
		{"none", nil, cephOptions{ID: defaultCephID}, ""},
		{"conf", []string{"--ceph-conf", "/c/ceph.conf"}, cephOptions{Conf: "/c/ceph.conf", ID: defaultCephID}, ""},
		{"conf and id", []string{"--ceph-conf=/c/ceph.conf", "--ceph-id=iscsi"}, cephOptions{Conf: "/c/ceph.conf", ID: "iscsi"}, ""},
		{"id without conf", []string{"--ceph-id", "x"}, cephOptions{}, "--ceph-id needs --ceph-conf"},
		{"empty id", []string{"--ceph-conf", "/c", "--ceph-id", ""}, cephOptions{}, "empty client id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := parseArgs(t, tc.args...)
			wantErr := tc.wantErr
			if tc.want.Conf != "" && !rbdSupport {
				// A build without RBD refuses --ceph-conf with a clear error.
				wantErr = "built without RBD support"
			}
			if wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Fatalf("error %v, want one containing %q", err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Ceph != tc.want {
				t.Fatalf("ceph options %+v, want %+v", o.Ceph, tc.want)
			}
		})
	}
}
