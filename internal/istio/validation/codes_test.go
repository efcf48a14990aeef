package validation

import "testing"

func TestCodesAreUniqueAndOrdered(t *testing.T) {
	for i, code := range Codes {
		if code.ID == "" || code.Name == "" || code.Description == "" || code.Severity == 0 {
			t.Errorf("code %d is incomplete: %+v", i, code)
		}
		if i > 0 && Codes[i-1].ID >= code.ID {
			t.Errorf("codes out of order or duplicated: %s then %s", Codes[i-1].ID, code.ID)
		}
	}
}
