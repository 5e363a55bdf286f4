package param

import (
	"errors"
	"reflect"
	"testing"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := Config{
		InitialR2T: false, ImmediateData: true, MaxConnections: 1,
		MaxRecvDataSegmentLength: 16777215, MaxXmitDataSegmentLength: 16777215,
		MaxBurstLength: 16777215, FirstBurstLength: 65536,
		DefaultTime2Wait: 0, DefaultTime2Retain: 0, MaxOutstandingR2T: 32,
		DataPDUInOrder: false, DataSequenceInOrder: false, ErrorRecoveryLevel: 0,
		HeaderDigest: []string{"None"}, DataDigest: []string{"None"},
		QueuedCommands: 32, RspTimeout: 90, NopInInterval: 30, NopInTimeout: 30, MaxSessions: 0,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("DefaultConfig() = %+v\nwant %+v", c, want)
	}
}

func TestConfigSet(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
		check       func(c Config) bool
	}{
		{"QueuedCommands", "2048", true, func(c Config) bool { return c.QueuedCommands == 2048 }},
		{"queuedcommands", "0x10", true, func(c Config) bool { return c.QueuedCommands == 16 }},
		{"QueuedCommands", "010", true, func(c Config) bool { return c.QueuedCommands == 8 }},
		{"QueuedCommands", "2049", false, nil},
		{"QueuedCommands", "0", false, nil},
		{"QueuedCommands", "-1", false, nil},
		{"QueuedCommands", "12abc", false, nil},
		{"QueuedCommands", "", false, nil},
		{"QueuedCommands", "99999999999999999999999", false, nil},
		{"RspTimeout", "1", false, nil},
		{"RspTimeout", "2", true, func(c Config) bool { return c.RspTimeout == 2 }},
		{"RspTimeout", "65536", false, nil},
		{"NOPInInterval", "0", true, func(c Config) bool { return c.NopInInterval == 0 }},
		{"NopInTimeout", "1", false, nil},
		{"NOPInTimeout", "65535", true, func(c Config) bool { return c.NopInTimeout == 65535 }},
		{"MaxSessions", "65535", true, func(c Config) bool { return c.MaxSessions == 65535 }},
		{"InitialR2T", "Yes", true, func(c Config) bool { return c.InitialR2T }},
		{"InitialR2T", "yes", false, nil},
		{"InitialR2T", "1", false, nil},
		{"ImmediateData", "No", true, func(c Config) bool { return !c.ImmediateData }},
		{"MaxConnections", "1", true, func(c Config) bool { return c.MaxConnections == 1 }},
		{"MaxConnections", "2", false, nil},
		{"MaxRecvDataSegmentLength", "16773120", true, func(c Config) bool { return c.MaxRecvDataSegmentLength == 16773120 }},
		{"MaxRecvDataSegmentLength", "511", false, nil},
		{"MaxRecvDataSegmentLength", "16777216", false, nil},
		{"MaxXmitDataSegmentLength", "512", true, func(c Config) bool { return c.MaxXmitDataSegmentLength == 512 }},
		{"MaxBurstLength", "16773120", true, func(c Config) bool { return c.MaxBurstLength == 16773120 }},
		{"FirstBurstLength", "16773120", true, func(c Config) bool { return c.FirstBurstLength == 16773120 }},
		{"DefaultTime2Wait", "0", true, func(c Config) bool { return c.DefaultTime2Wait == 0 }},
		{"DefaultTime2Wait", "2", false, nil},
		{"DefaultTime2Retain", "20", false, nil},
		{"MaxOutstandingR2T", "8", true, func(c Config) bool { return c.MaxOutstandingR2T == 8 }},
		{"MaxOutstandingR2T", "0", false, nil},
		{"DataPDUInOrder", "Yes", true, func(c Config) bool { return c.DataPDUInOrder }},
		{"DataSequenceInOrder", "Yes", true, func(c Config) bool { return c.DataSequenceInOrder }},
		{"ErrorRecoveryLevel", "1", false, nil},
		{"HeaderDigest", "crc32c,none", true, func(c Config) bool { return reflect.DeepEqual(c.HeaderDigest, []string{"CRC32C", "None"}) }},
		{"DataDigest", "CRC32C", true, func(c Config) bool { return reflect.DeepEqual(c.DataDigest, []string{"CRC32C"}) }},
		{"DataDigest", "MD5", false, nil},
		{"IFMarker", "No", true, func(c Config) bool { return true }},
		{"OFMarker", "Yes", false, nil},
		{"OFMarkInt", "2048", true, func(c Config) bool { return true }},
		{"IFMarkInt", "0", false, nil},
		{"Lun", "0", false, nil},
		{"Alias", "x", false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			c := DefaultConfig()
			err := c.Set(tc.name, tc.value)
			if !tc.ok {
				if err == nil || !errors.Is(err, ErrConfig) {
					t.Fatalf("Set(%q, %q) = %v, want ErrConfig", tc.name, tc.value, err)
				}
				if !reflect.DeepEqual(c, DefaultConfig()) {
					t.Fatalf("failed Set changed the config: %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Set(%q, %q): %v", tc.name, tc.value, err)
			}
			if !tc.check(c) {
				t.Fatalf("Set(%q, %q) gave %+v", tc.name, tc.value, c)
			}
		})
	}
}
