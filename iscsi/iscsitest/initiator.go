// Package iscsitest is a small iSCSI initiator on the pdu codec, used by the
// target's tests: login (CHAP, digests), discovery, SCSI commands with every
// data-out mode, NOP, task management and logout, plus raw PDU access for
// protocol-violation tests. It is synchronous: one exchange at a time unless
// the caller drives Send/Recv itself.
package iscsitest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/scstd/scstd/iscsi/auth"
	"github.com/scstd/scstd/iscsi/param"
	"github.com/scstd/scstd/iscsi/pdu"
)

// Options describes one login.
type Options struct {
	InitiatorName string
	TargetName    string // empty: discovery session
	ISID          uint64
	TSIH          uint16
	CID           uint16
	// CHAP: with User set the initiator offers CHAP; with TargetUser set
	// it also asks the target to authenticate (mutual CHAP) and checks the
	// answer against TargetSecret.
	User, Secret             string
	TargetUser, TargetSecret string
	HeaderDigest, DataDigest bool
	// Keys are extra operational keys offered (e.g. InitialR2T=No).
	Keys []param.KV
	// SkipSecurity starts the login in the operational stage.
	SkipSecurity bool
}

// LoginError is a login refused with a non-zero status.
type LoginError struct{ Status uint16 }

func (e *LoginError) Error() string { return fmt.Sprintf("login status %#04x", e.Status) }

// Conn is one initiator connection.
type Conn struct {
	NC  net.Conn
	R   *pdu.Reader
	Enc *pdu.Encoder

	CmdSN, ExpStatSN   uint32
	ExpCmdSN, MaxCmdSN uint32
	TSIH               uint16
	ITT                uint32
	// Answers holds the target's login answers by key.
	Answers map[string]string
	// Negotiated values (RFC defaults until login answers them).
	InitialR2T, ImmediateData bool
	TargetMRDSL               uint32 // max data per PDU we send
	MaxBurst, FirstBurst      uint32
	MaxOutstandingR2T         uint32
	// Pings counts target NOP-In pings answered while waiting.
	Pings   int
	Timeout time.Duration
}

// Dial connects to a target portal.
func Dial(addr string) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r := pdu.NewReader(nc, 64<<10)
	r.MaxData = 1<<24 - 1
	return &Conn{NC: nc, R: r, Enc: pdu.NewEncoder(), Answers: map[string]string{}, Timeout: 10 * time.Second,
		InitialR2T: true, ImmediateData: true, TargetMRDSL: 8192, MaxBurst: 262144, FirstBurst: 65536, MaxOutstandingR2T: 1}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.NC.Close() }

// NextITT returns a fresh initiator task tag.
func (c *Conn) NextITT() uint32 {
	c.ITT++
	if c.ITT == pdu.ReservedTag {
		c.ITT = 1
	}
	return c.ITT
}

// Send writes one PDU (with an optional AHS).
func (c *Conn) Send(h *pdu.BHS, ahs, data []byte) error {
	var f pdu.Frame
	iov := c.Enc.AppendWithAHS(nil, &f, h, ahs, data)
	c.NC.SetWriteDeadline(time.Now().Add(c.Timeout))
	_, err := iov.WriteTo(c.NC)
	return err
}

// SendRaw writes bytes as they are.
func (c *Conn) SendRaw(b []byte) error {
	_, err := c.NC.Write(b)
	return err
}

// Recv reads the next PDU and its data, tracking StatSN and the window.
func (c *Conn) Recv() (*pdu.Header, []byte, error) {
	c.NC.SetReadDeadline(time.Now().Add(c.Timeout))
	h := new(pdu.Header)
	if err := c.R.ReadHeader(h); err != nil {
		return nil, nil, err
	}
	h.AHS = append([]byte(nil), h.AHS...)
	data := make([]byte, c.R.Pending())
	if err := c.R.ReadData(data); err != nil {
		return nil, nil, err
	}
	switch h.Opcode() {
	case pdu.OpSCSIResp, pdu.OpTMFResp, pdu.OpTextResp, pdu.OpLogoutResp, pdu.OpReject, pdu.OpLoginResp, pdu.OpNOPIn, pdu.OpAsyncMsg:
		if h.Opcode() != pdu.OpNOPIn || h.ITT() != pdu.ReservedTag {
			c.ExpStatSN = h.StatSN() + 1
		}
	case pdu.OpDataIn:
		if h.Flags()&pdu.FlagStatus != 0 {
			c.ExpStatSN = h.StatSN() + 1
		}
	}
	if h.Opcode() != pdu.OpLoginResp || h.StatusClass() == 0 {
		c.ExpCmdSN, c.MaxCmdSN = h.ExpCmdSN(), h.MaxCmdSN()
	}
	return h, data, nil
}

// RecvSkipPings is Recv that answers target NOP-In pings on the way.
func (c *Conn) RecvSkipPings() (*pdu.Header, []byte, error) {
	for {
		h, data, err := c.Recv()
		if err != nil {
			return nil, nil, err
		}
		if h.Opcode() == pdu.OpNOPIn && h.TTT() != pdu.ReservedTag {
			c.Pings++
			var o pdu.BHS
			o.SetOpcode(pdu.OpNOPOut, true)
			o.SetFinal(true)
			o.SetLUN(h.LUN())
			o.SetITT(pdu.ReservedTag)
			o.SetTTT(h.TTT())
			o.SetCmdSN(c.CmdSN)
			o.SetExpStatSN(c.ExpStatSN)
			if err := c.Send(&o, nil, nil); err != nil {
				return nil, nil, err
			}
			continue
		}
		return h, data, nil
	}
}

// --- login ---

func (c *Conn) loginPDU(o *Options, transit bool, csg, nsg uint8, kvs []param.KV) (*pdu.Header, []param.KV, error) {
	var h pdu.BHS
	h.SetOpcode(pdu.OpLoginReq, true)
	h.SetLoginFlags(transit, false, csg, nsg)
	h.SetISID(o.ISID)
	h.SetTSIH(o.TSIH)
	h.SetCID(o.CID)
	h.SetITT(c.NextITT())
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	if err := c.Send(&h, nil, param.AppendText(nil, kvs)); err != nil {
		return nil, nil, err
	}
	rh, data, err := c.Recv()
	if err != nil {
		return nil, nil, err
	}
	if rh.Opcode() != pdu.OpLoginResp {
		return nil, nil, fmt.Errorf("got %v during login", rh.Opcode())
	}
	if st := uint16(rh.StatusClass())<<8 | uint16(rh.StatusDetail()); st != 0 {
		return rh, nil, &LoginError{Status: st}
	}
	ans, err := param.ParseText(data)
	if err != nil {
		return nil, nil, err
	}
	for _, kv := range ans {
		c.Answers[kv.Key] = kv.Value
	}
	return rh, ans, nil
}

// Login runs a login to the full feature phase.
func (c *Conn) Login(o Options) error {
	if o.ISID == 0 {
		o.ISID = 0x400000000001
	}
	if o.InitiatorName == "" {
		o.InitiatorName = "iqn.2026-01.test:initiator"
	}
	c.CmdSN = 1
	first := []param.KV{{Key: "InitiatorName", Value: o.InitiatorName}}
	if o.TargetName == "" {
		first = append(first, param.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		first = append(first, param.KV{Key: "TargetName", Value: o.TargetName}, param.KV{Key: "SessionType", Value: "Normal"})
	}
	ops := c.operationalKeys(&o)
	if o.SkipSecurity {
		return c.operational(&o, append(first, ops...))
	}
	method := "None"
	if o.User != "" {
		method = "CHAP"
	}
	kvs := append(first, param.KV{Key: "AuthMethod", Value: method})
	rh, ans, err := c.loginPDU(&o, true, pdu.StageSecurity, pdu.StageOperational, kvs)
	if err != nil {
		return err
	}
	if method == "CHAP" {
		if v, _ := param.Lookup(ans, "AuthMethod"); v != "CHAP" {
			return fmt.Errorf("target answered AuthMethod=%q", v)
		}
		if rh, err = c.chap(&o); err != nil {
			return err
		}
	}
	if !rh.Transit() {
		return errors.New("target did not leave the security stage")
	}
	if rh.NSG() == pdu.StageFullFeature {
		c.finishLogin(rh)
		return nil
	}
	return c.operational(&o, ops)
}

func (c *Conn) chap(o *Options) (*pdu.Header, error) {
	_, ans, err := c.loginPDU(o, false, pdu.StageSecurity, pdu.StageSecurity, []param.KV{{Key: "CHAP_A", Value: "5"}})
	if err != nil {
		return nil, err
	}
	idS, _ := param.Lookup(ans, "CHAP_I")
	chS, _ := param.Lookup(ans, "CHAP_C")
	id, err := strconv.Atoi(idS)
	if err != nil {
		return nil, fmt.Errorf("CHAP_I %q", idS)
	}
	challenge, err := auth.DecodeBinary(chS)
	if err != nil {
		return nil, err
	}
	r := auth.Response(byte(id), []byte(o.Secret), challenge)
	kvs := []param.KV{{Key: "CHAP_N", Value: o.User}, {Key: "CHAP_R", Value: "0x" + hex.EncodeToString(r[:])}}
	var myID byte
	var myChallenge [16]byte
	if o.TargetUser != "" {
		rand.Read(myChallenge[:])
		myID = myChallenge[0]
		kvs = append(kvs, param.KV{Key: "CHAP_I", Value: strconv.Itoa(int(myID))},
			param.KV{Key: "CHAP_C", Value: "0x" + hex.EncodeToString(myChallenge[:])})
	}
	rh, ans, err := c.loginPDU(o, true, pdu.StageSecurity, pdu.StageOperational, kvs)
	if err != nil {
		return nil, err
	}
	if o.TargetUser != "" {
		n, _ := param.Lookup(ans, "CHAP_N")
		rs, _ := param.Lookup(ans, "CHAP_R")
		got, err := auth.DecodeBinary(rs)
		want := auth.Response(myID, []byte(o.TargetSecret), myChallenge[:])
		if err != nil || n != o.TargetUser || !bytes.Equal(got, want[:]) {
			return nil, fmt.Errorf("mutual CHAP: target answered %q %q", n, rs)
		}
	}
	return rh, nil
}

func (c *Conn) operationalKeys(o *Options) []param.KV {
	hd, dd := "None", "None"
	if o.HeaderDigest {
		hd = "CRC32C"
	}
	if o.DataDigest {
		dd = "CRC32C"
	}
	kvs := []param.KV{{Key: "HeaderDigest", Value: hd}, {Key: "DataDigest", Value: dd}}
	if o.TargetName != "" {
		kvs = append(kvs, param.KV{Key: "ErrorRecoveryLevel", Value: "0"},
			param.KV{Key: "MaxRecvDataSegmentLength", Value: "262144"})
	} else {
		kvs = append(kvs, param.KV{Key: "MaxRecvDataSegmentLength", Value: "8192"})
	}
	seen := map[string]bool{}
	for _, kv := range o.Keys {
		seen[kv.Key] = true
	}
	out := o.Keys[:len(o.Keys):len(o.Keys)]
	for _, kv := range kvs {
		if !seen[kv.Key] {
			out = append(out, kv)
		}
	}
	return out
}

func (c *Conn) operational(o *Options, kvs []param.KV) error {
	for i := 0; i < 8; i++ {
		rh, _, err := c.loginPDU(o, true, pdu.StageOperational, pdu.StageFullFeature, kvs)
		if err != nil {
			return err
		}
		if rh.Transit() && rh.NSG() == pdu.StageFullFeature {
			c.finishLogin(rh)
			return nil
		}
		kvs = nil
	}
	return errors.New("target never moved to full feature phase")
}

func (c *Conn) finishLogin(rh *pdu.Header) {
	c.TSIH = rh.TSIH()
	num := func(k string, dst *uint32) {
		if v, ok := c.Answers[k]; ok {
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				*dst = uint32(n)
			}
		}
	}
	boolean := func(k string, dst *bool) {
		if v, ok := c.Answers[k]; ok {
			*dst = v == "Yes"
		}
	}
	num("MaxRecvDataSegmentLength", &c.TargetMRDSL)
	num("MaxBurstLength", &c.MaxBurst)
	num("FirstBurstLength", &c.FirstBurst)
	num("MaxOutstandingR2T", &c.MaxOutstandingR2T)
	// RFC 7143 §13.14: FirstBurstLength never exceeds MaxBurstLength.
	c.FirstBurst = min(c.FirstBurst, c.MaxBurst)
	boolean("InitialR2T", &c.InitialR2T)
	boolean("ImmediateData", &c.ImmediateData)
	c.R.SetDigests(c.Answers["HeaderDigest"] == "CRC32C", c.Answers["DataDigest"] == "CRC32C")
	c.Enc.SetDigests(c.Answers["HeaderDigest"] == "CRC32C", c.Answers["DataDigest"] == "CRC32C")
}

// --- full feature phase ---

// Text sends a Text Request and collects the (possibly continued) answer.
func (c *Conn) Text(kvs []param.KV) ([]param.KV, error) {
	itt := c.NextITT()
	ttt := uint32(pdu.ReservedTag)
	data := param.AppendText(nil, kvs)
	var all []byte
	for {
		var h pdu.BHS
		h.SetOpcode(pdu.OpTextReq, false)
		h.SetFinal(true)
		h.SetITT(itt)
		h.SetTTT(ttt)
		h.SetCmdSN(c.CmdSN)
		h.SetExpStatSN(c.ExpStatSN)
		if err := c.Send(&h, nil, data); err != nil {
			return nil, err
		}
		data = nil
		rh, d, err := c.RecvSkipPings()
		if err != nil {
			return nil, err
		}
		if rh.Opcode() != pdu.OpTextResp {
			return nil, fmt.Errorf("got %v (reason %#x) for Text", rh.Opcode(), rh.Reason())
		}
		c.CmdSN++
		all = append(all, d...)
		if rh.Final() {
			return param.ParseText(all)
		}
		ttt = rh.TTT()
	}
}

// Result is the outcome of a SCSI command.
type Result struct {
	Status   byte
	Sense    []byte
	Data     []byte
	Flags    byte // O/U bits of the response
	Residual uint32
	DataPDUs int
	R2Ts     int
	// Response is the iSCSI response code (0 = completed at target).
	Response byte
}

// Cmd describes one SCSI command.
type Cmd struct {
	LUN       uint64
	CDB       []byte
	Attr      uint8
	ReadLen   uint32 // expected Data-In length (sets R)
	Write     []byte // Data-Out (sets W)
	EDTL      *uint32
	Immediate bool // I bit
	// NoImmediate and NoUnsolicited restrict what the initiator sends
	// without R2T even when the session allows it.
	NoImmediate, NoUnsolicited bool
}

// SendCommand sends the SCSI Command PDU (with immediate data) and the
// unsolicited Data-Out, returning the ITT. The response must be collected
// with Complete.
func (c *Conn) SendCommand(cmd *Cmd) (uint32, error) {
	itt := c.NextITT()
	var h pdu.BHS
	h.SetOpcode(pdu.OpSCSICmd, cmd.Immediate)
	f := byte(pdu.FlagFinal) | cmd.Attr&7
	if cmd.ReadLen > 0 {
		f |= pdu.FlagRead
	}
	if cmd.Write != nil {
		f |= pdu.FlagWrite
	}
	edtl := cmd.ReadLen
	if cmd.Write != nil {
		edtl = uint32(len(cmd.Write))
	}
	if cmd.EDTL != nil {
		edtl = *cmd.EDTL
	}
	h.SetLUN(cmd.LUN)
	h.SetITT(itt)
	h.SetEDTL(edtl)
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	var ahs []byte
	copy(h.CDB(), cmd.CDB)
	if len(cmd.CDB) > 16 {
		ahs = pdu.AppendAHS(nil, pdu.AHSExtendedCDB, append([]byte{0}, cmd.CDB[16:]...))
	}
	var imm []byte
	unsol := uint32(0)
	if w := cmd.Write; len(w) > 0 {
		unsolMax := min(c.FirstBurst, uint32(len(w)))
		if c.ImmediateData && !cmd.NoImmediate {
			imm = w[:min(unsolMax, c.TargetMRDSL)]
		}
		unsol = uint32(len(imm))
		if !c.InitialR2T && !cmd.NoUnsolicited && unsol < unsolMax {
			f &^= pdu.FlagFinal
		}
	}
	h.SetFlags(f)
	if err := c.Send(&h, ahs, imm); err != nil {
		return 0, err
	}
	if !cmd.Immediate {
		c.CmdSN++
	}
	if f&pdu.FlagFinal == 0 {
		end := min(c.FirstBurst, uint32(len(cmd.Write)))
		if err := c.sendData(cmd, itt, pdu.ReservedTag, unsol, end-unsol); err != nil {
			return 0, err
		}
	}
	return itt, nil
}

// sendData sends one Data-Out sequence for [off, off+n).
func (c *Conn) sendData(cmd *Cmd, itt, ttt, off, n uint32) error {
	end := off + n
	for sn := uint32(0); off < end; sn++ {
		l := min(c.TargetMRDSL, end-off)
		var h pdu.BHS
		h.SetOpcode(pdu.OpDataOut, false)
		if off+l == end {
			h.SetFinal(true)
		}
		h.SetLUN(cmd.LUN)
		h.SetITT(itt)
		h.SetTTT(ttt)
		h.SetExpStatSN(c.ExpStatSN)
		h.SetDataSN(sn)
		h.SetBufferOffset(off)
		if err := c.Send(&h, nil, cmd.Write[off:off+l]); err != nil {
			return err
		}
		off += l
	}
	return nil
}

// Complete reads PDUs for the command itt until its status arrives,
// answering R2Ts with data from cmd.
func (c *Conn) Complete(cmd *Cmd, itt uint32) (*Result, error) {
	res := &Result{}
	for {
		h, data, err := c.RecvSkipPings()
		if err != nil {
			return nil, err
		}
		if h.ITT() != itt {
			return nil, fmt.Errorf("unexpected %v for ITT %#x (waiting for %#x)", h.Opcode(), h.ITT(), itt)
		}
		switch h.Opcode() {
		case pdu.OpR2T:
			res.R2Ts++
			off, n := h.BufferOffset(), h.DesiredLength()
			if uint64(off)+uint64(n) > uint64(len(cmd.Write)) {
				return nil, fmt.Errorf("R2T for %d+%d beyond %d", off, n, len(cmd.Write))
			}
			if err := c.sendData(cmd, itt, h.TTT(), off, n); err != nil {
				return nil, err
			}
		case pdu.OpDataIn:
			res.DataPDUs++
			if int(h.BufferOffset()) != len(res.Data) {
				return nil, fmt.Errorf("Data-In offset %d, have %d", h.BufferOffset(), len(res.Data))
			}
			if h.DataSN() != uint32(res.DataPDUs-1) {
				return nil, fmt.Errorf("Data-In DataSN %d, want %d", h.DataSN(), res.DataPDUs-1)
			}
			res.Data = append(res.Data, data...)
			if h.Flags()&pdu.FlagStatus != 0 {
				res.Status = h.Status()
				res.Flags = h.Flags() & (pdu.FlagOver | pdu.FlagUnder)
				res.Residual = h.ResidualCount()
				return res, nil
			}
		case pdu.OpSCSIResp:
			res.Status = h.Status()
			res.Response = h.Response()
			res.Flags = h.Flags() & (pdu.FlagOver | pdu.FlagUnder)
			res.Residual = h.ResidualCount()
			if len(data) >= 2 {
				n := int(data[0])<<8 | int(data[1])
				if n > len(data)-2 {
					return nil, fmt.Errorf("sense length %d > %d", n, len(data)-2)
				}
				res.Sense = data[2 : 2+n]
			}
			if h.ExpDataSN() != uint32(res.DataPDUs+res.R2Ts) {
				return nil, fmt.Errorf("ExpDataSN %d, want %d", h.ExpDataSN(), res.DataPDUs+res.R2Ts)
			}
			return res, nil
		case pdu.OpReject:
			return nil, fmt.Errorf("command rejected, reason %#x", h.Reason())
		default:
			return nil, fmt.Errorf("unexpected %v", h.Opcode())
		}
	}
}

// Do runs one SCSI command to completion.
func (c *Conn) Do(cmd *Cmd) (*Result, error) {
	itt, err := c.SendCommand(cmd)
	if err != nil {
		return nil, err
	}
	return c.Complete(cmd, itt)
}

// NOP sends a NOP-Out ping and waits for its NOP-In.
func (c *Conn) NOP(data []byte) ([]byte, error) {
	itt := c.NextITT()
	var h pdu.BHS
	h.SetOpcode(pdu.OpNOPOut, true)
	h.SetFinal(true)
	h.SetITT(itt)
	h.SetTTT(pdu.ReservedTag)
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	if err := c.Send(&h, nil, data); err != nil {
		return nil, err
	}
	rh, d, err := c.RecvSkipPings()
	if err != nil {
		return nil, err
	}
	if rh.Opcode() != pdu.OpNOPIn || rh.ITT() != itt {
		return nil, fmt.Errorf("got %v ITT %#x for NOP-Out", rh.Opcode(), rh.ITT())
	}
	return d, nil
}

// SendTMF sends a Task Management Function Request; returns its ITT.
func (c *Conn) SendTMF(fn uint8, lun uint64, ref, refCmdSN uint32) (uint32, error) {
	itt := c.NextITT()
	var h pdu.BHS
	h.SetOpcode(pdu.OpTMFReq, true)
	h.SetFlags(pdu.FlagFinal | fn&0x7f)
	h.SetLUN(lun)
	h.SetITT(itt)
	h.SetRefTaskTag(ref)
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	h.SetRefCmdSN(refCmdSN)
	return itt, c.Send(&h, nil, nil)
}

// TMF runs a task management function and returns its response code.
func (c *Conn) TMF(fn uint8, lun uint64, ref, refCmdSN uint32) (byte, error) {
	itt, err := c.SendTMF(fn, lun, ref, refCmdSN)
	if err != nil {
		return 0, err
	}
	for {
		h, _, err := c.RecvSkipPings()
		if err != nil {
			return 0, err
		}
		if h.Opcode() == pdu.OpTMFResp && h.ITT() == itt {
			return h.Response(), nil
		}
	}
}

// Logout sends a Logout Request and returns the response code.
func (c *Conn) Logout(reason uint8) (byte, error) {
	itt := c.NextITT()
	var h pdu.BHS
	h.SetOpcode(pdu.OpLogoutReq, true)
	h.SetFlags(pdu.FlagFinal | reason)
	h.SetITT(itt)
	h.SetCID(0)
	h.SetCmdSN(c.CmdSN)
	h.SetExpStatSN(c.ExpStatSN)
	if err := c.Send(&h, nil, nil); err != nil {
		return 0, err
	}
	for {
		rh, _, err := c.RecvSkipPings()
		if err != nil {
			return 0, err
		}
		if rh.Opcode() == pdu.OpLogoutResp && rh.ITT() == itt {
			return rh.Response(), nil
		}
	}
}

// Read10 and Write10 build CDBs.
func Read10(lba uint32, blocks uint16) []byte {
	return []byte{0x28, 0, byte(lba >> 24), byte(lba >> 16), byte(lba >> 8), byte(lba), 0, byte(blocks >> 8), byte(blocks), 0}
}

// Write10 builds a WRITE(10) CDB.
func Write10(lba uint32, blocks uint16) []byte {
	return []byte{0x2a, 0, byte(lba >> 24), byte(lba >> 16), byte(lba >> 8), byte(lba), 0, byte(blocks >> 8), byte(blocks), 0}
}
