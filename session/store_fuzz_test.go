package session

import (
	"bytes"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// testItems feeds the unit test and the fuzz seeds of the item decoding.
var testItems = []record{
	{found: true, data: encodeValues(map[string]string{"user": "42"}), version: 3, expiresAt: 1 << 31, createdMS: 1, touchedMS: 2, region: "us-east-1"},
	{found: true, tomb: true, version: tombVersion, expiresAt: 99, createdMS: 5, touchedMS: 5, region: "ap-northeast-1"},
	{found: true, data: []byte{1, 0}, version: 1<<64 - 1, region: ""},
}

func TestItemRoundTrip(t *testing.T) {
	for _, r := range testItems {
		got := decodeItem(encodeItem("k", r))
		if got.tomb != r.tomb || got.version != r.version || got.expiresAt != r.expiresAt ||
			got.createdMS != r.createdMS || got.touchedMS != r.touchedMS || got.region != r.region ||
			(!r.tomb && !bytes.Equal(got.data, r.data)) {
			t.Fatalf("decode(encode(%+v)) = %+v", r, got)
		}
	}
}

// FuzzDecodeItem: a session item read from the table is outside input (a
// replica, a restore, another writer). Any attribute values, of the right
// type or not, decode without a panic; a well-formed item round-trips; and
// the values decode or are rejected, never half-read.
func FuzzDecodeItem(f *testing.F) {
	for _, r := range testItems {
		it := encodeItem("k", r)
		n := func(a string) string { return it[a].(*types.AttributeValueMemberN).Value }
		f.Add(r.data, n(AttrVersion), n(AttrExpiresAt), n(AttrCreated), n(AttrTouched), r.region, r.tomb, false)
	}
	f.Add([]byte{1, 0xff, 0xff}, "-1", "1e400", "NaN", "", "\xff", true, true)
	f.Fuzz(func(t *testing.T, data []byte, version, expires, created, touched, region string, tomb, wrongTypes bool) {
		it := map[string]types.AttributeValue{
			AttrKey:       &types.AttributeValueMemberS{Value: "k"},
			AttrData:      &types.AttributeValueMemberB{Value: data},
			AttrVersion:   &types.AttributeValueMemberN{Value: version},
			AttrExpiresAt: &types.AttributeValueMemberN{Value: expires},
			AttrCreated:   &types.AttributeValueMemberN{Value: created},
			AttrTouched:   &types.AttributeValueMemberN{Value: touched},
			AttrRegion:    &types.AttributeValueMemberS{Value: region},
			AttrDestroyed: &types.AttributeValueMemberBOOL{Value: tomb},
		}
		if wrongTypes { // every attribute of another type than the schema's
			it[AttrData] = &types.AttributeValueMemberS{Value: string(data)}
			it[AttrVersion] = &types.AttributeValueMemberS{Value: version}
			it[AttrRegion] = &types.AttributeValueMemberN{Value: region}
			it[AttrDestroyed] = &types.AttributeValueMemberS{Value: "true"}
			it[AttrTouched] = &types.AttributeValueMemberNULL{Value: true}
		}
		r := decodeItem(it)
		if !r.found {
			t.Fatal("an item decoded as missing")
		}
		if wrongTypes && (r.tomb || r.version != 0 || r.data != nil || r.region != "" || r.touchedMS != 0) {
			t.Fatalf("mistyped attributes were read: %+v", r)
		}
		if !wrongTypes {
			again := decodeItem(encodeItem("k", r))
			if again.version != r.version || again.expiresAt != r.expiresAt || again.tomb != r.tomb || again.region != r.region {
				t.Fatalf("re-encoding changed the item: %+v vs %+v", r, again)
			}
		}
		if v, err := decodeValues(r.data); err == nil && len(r.data) > 0 {
			if _, err := decodeValues(encodeValues(v)); err != nil {
				t.Fatalf("values %x decoded but do not re-encode", r.data)
			}
		}
	})
}
