package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/scstd/scstd/vdisk"
)

func TestALUAFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    *vdisk.PortIdentity
		wantErr string
	}{
		{"single node", nil, nil, ""},
		{"port only", []string{"--rel-port", "2"}, &vdisk.PortIdentity{RelPort: 2, Group: 2}, ""},
		{"port, group, peers", []string{"--rel-port=2", "--tpg-id=20", "--tpg-peers", "10:1, 30:3"},
			&vdisk.PortIdentity{RelPort: 2, Group: 20, Peers: []vdisk.PortGroup{{ID: 10, RelPorts: []uint16{1}}, {ID: 30, RelPorts: []uint16{3}}}}, ""},
		{"group without port", []string{"--tpg-id", "1"}, nil, "need --rel-port"},
		{"peers without port", []string{"--tpg-peers", "1:1"}, nil, "need --rel-port"},
		{"port too big", []string{"--rel-port", "70000"}, nil, "1-65535"},
		{"bad peer", []string{"--rel-port", "1", "--tpg-peers", "2"}, nil, "GROUP:RELPORT"},
		{"zero peer", []string{"--rel-port", "1", "--tpg-peers", "0:2"}, nil, "GROUP:RELPORT"},
		{"duplicate group", []string{"--rel-port", "1", "--tpg-peers", "1:2"}, nil, "used twice"},
		{"duplicate port", []string{"--rel-port", "1", "--tpg-peers", "2:1"}, nil, "used twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := parseArgs(t, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := o.ALUA.identity(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("identity %+v, want %+v", got, tc.want)
			}
		})
	}
}
