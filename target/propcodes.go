package target

import "github.com/scstd/scstd/target/scsi"

// CoreOpcode describes a command the core executes itself, never handing it
// to Handler.Exec. Handlers that answer REPORT SUPPORTED OPERATION CODES
// merge these into their own list.
type CoreOpcode struct {
	Name          string
	Opcode        byte
	ServiceAction byte // valid when HasSA
	HasSA         bool
	CDBLen        int
	// Usage is the CDB USAGE DATA of the one-command RSOC format (SPC-4
	// 6.35.3): len(Usage) == CDBLen, Usage[0] the opcode, the SERVICE
	// ACTION field (low five bits of Usage[1]) holding the service action
	// itself, and a bit set for every other CDB bit the core examines.
	Usage []byte
}

// CoreOpcodes returns the commands the core executes: REPORT LUNS, REQUEST
// SENSE, PERSISTENT RESERVE IN/OUT with every service action, and SPC-2
// RESERVE/RELEASE (6) and (10). The slice is freshly allocated.
func CoreOpcodes() []CoreOpcode {
	out := []CoreOpcode{
		{Name: "REQUEST SENSE", Opcode: scsi.OpRequestSense, CDBLen: 6,
			Usage: []byte{scsi.OpRequestSense, 0x01, 0, 0, 0xff, 0}},
		{Name: "RESERVE(6)", Opcode: scsi.OpReserve6, CDBLen: 6,
			Usage: []byte{scsi.OpReserve6, 0x11, 0, 0, 0, 0}},
		{Name: "RELEASE(6)", Opcode: scsi.OpRelease6, CDBLen: 6,
			Usage: []byte{scsi.OpRelease6, 0x11, 0, 0, 0, 0}},
		{Name: "RESERVE(10)", Opcode: scsi.OpReserve10, CDBLen: 10,
			Usage: []byte{scsi.OpReserve10, 0x12, 0, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "RELEASE(10)", Opcode: scsi.OpRelease10, CDBLen: 10,
			Usage: []byte{scsi.OpRelease10, 0x12, 0, 0, 0, 0, 0, 0, 0, 0}},
	}
	prinNames := [...]string{"READ KEYS", "READ RESERVATION", "REPORT CAPABILITIES", "READ FULL STATUS"}
	for sa, n := range prinNames {
		out = append(out, CoreOpcode{Name: "PERSISTENT RESERVE IN " + n, Opcode: scsi.OpPersistentReserveIn,
			ServiceAction: byte(sa), HasSA: true, CDBLen: 10,
			Usage: []byte{scsi.OpPersistentReserveIn, byte(sa), 0, 0, 0, 0, 0, 0xff, 0xff, 0}})
	}
	proutNames := [...]string{"REGISTER", "RESERVE", "RELEASE", "CLEAR", "PREEMPT",
		"PREEMPT AND ABORT", "REGISTER AND IGNORE EXISTING KEY", "REGISTER AND MOVE"}
	for sa, n := range proutNames {
		out = append(out, CoreOpcode{Name: "PERSISTENT RESERVE OUT " + n, Opcode: scsi.OpPersistentReserveOut,
			ServiceAction: byte(sa), HasSA: true, CDBLen: 10,
			Usage: []byte{scsi.OpPersistentReserveOut, byte(sa), 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0}})
	}
	out = append(out, CoreOpcode{Name: "REPORT LUNS", Opcode: scsi.OpReportLuns, CDBLen: 12,
		Usage: []byte{scsi.OpReportLuns, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}})
	return out
}
