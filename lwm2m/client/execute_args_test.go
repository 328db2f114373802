package client

import "testing"

func TestExecuteArgs(t *testing.T) {
	good := []string{"", "0", "0,1", "0='a'", "1='x y',2", "9=''"}
	bad := []string{"x", "0=", "0='", "0,", "5='a'b", "0='a',", "10", ",0", "0=a", "0='\x01'"}
	for _, s := range good {
		if err := checkExecuteArgs(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range bad {
		if checkExecuteArgs(s) == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
