#include "mgd/serialize/value.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "serialize/serialize_testing.h"

namespace {

using mgd::serialize::Dict;
using mgd::serialize::Value;
using mgd::testing::error_of;

TEST(SerializeValue, DefaultIsNone) {
  Value v;
  EXPECT_TRUE(v.is_none());
  EXPECT_EQ(v.type_name(), "NoneType");
  EXPECT_TRUE(Value(nullptr).is_none());
}

TEST(SerializeValue, Scalars) {
  EXPECT_TRUE(Value(true).to_bool());
  EXPECT_EQ(Value(42).to_int(), 42);
  EXPECT_EQ(Value(int64_t{1} << 50).to_int(), int64_t{1} << 50);
  EXPECT_EQ(Value(uint8_t{200}).to_int(), 200);
  EXPECT_DOUBLE_EQ(Value(0.5).to_double(), 0.5);
  EXPECT_DOUBLE_EQ(Value(3).to_double(), 3.0);  // an int reads as a float, as in Python
  EXPECT_EQ(Value("abc").to_string(), "abc");
  EXPECT_EQ(Value::bytes(std::string("\0x", 2)).to_bytes(), std::string("\0x", 2));
  EXPECT_EQ(Value::bytes("b").type_name(), "bytes");
  EXPECT_NE(error_of([] { Value(~uint64_t{0}); }).find("does not fit in int64"), std::string::npos);
}

TEST(SerializeValue, WrongKindNamesBothTypes) {
  const std::string msg = error_of([] { Value("x").to_int(); });
  EXPECT_NE(msg.find("expected int but got str"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { Value(1).to_bool(); }).find("expected bool"), std::string::npos);
  EXPECT_NE(error_of([] { Value(1.5).items(); }).find("list or tuple"), std::string::npos);
  EXPECT_NE(error_of([] { Value(torch::Tensor()); }).find("undefined"), std::string::npos);
}

TEST(SerializeValue, ListsAndTuples) {
  Value l = Value::list({1, "two", Value::tuple({3.0})});
  EXPECT_TRUE(l.is_list());
  ASSERT_EQ(l.items().size(), 3u);
  EXPECT_TRUE(l.items()[2].is_tuple());
  l.items().push_back(Value());
  EXPECT_EQ(l.items().size(), 4u);
  std::ostringstream s;
  s << l;
  EXPECT_EQ(s.str(), "[1, 'two', (3,), None]");
}

TEST(SerializeValue, DictKeepsInsertionOrderAndOverwritesInPlace) {
  Dict d;
  d.insert_or_assign("b", 1);
  d.insert_or_assign(7, 2);
  d.insert_or_assign("a", 3);
  d.insert_or_assign("b", 4);  // keeps its position, as in Python
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d.items()[0].first.to_string(), "b");
  EXPECT_EQ(d.items()[0].second.to_int(), 4);
  EXPECT_EQ(d.items()[1].first.to_int(), 7);
  EXPECT_TRUE(d.contains(7));
  EXPECT_FALSE(d.contains("7"));  // str and int keys are distinct
  EXPECT_EQ(d.at("a").to_int(), 3);
  EXPECT_EQ(d.find(1.5), nullptr);
  EXPECT_NE(error_of([&] { d.at("zz"); }).find("no key 'zz'"), std::string::npos);
  EXPECT_NE(error_of([&] { d.insert_or_assign(1.5, 0); }).find("keys must be str or int"),
            std::string::npos);

  EXPECT_TRUE(d.erase("b"));
  EXPECT_FALSE(d.erase("b"));
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.at(7).to_int(), 2);  // the index survives the erase
  EXPECT_EQ(d.at("a").to_int(), 3);
}

TEST(SerializeValue, OrderedDictAndAttributes) {
  Dict d = Dict::ordered_dict();
  EXPECT_TRUE(d.is_ordered());
  d.set_attribute("_metadata", Value(Dict()));
  d.set_attribute("_metadata", 5);
  ASSERT_EQ(d.attributes().size(), 1u);
  EXPECT_EQ(d.attribute("_metadata")->to_int(), 5);
  EXPECT_EQ(d.attribute("other"), nullptr);
  EXPECT_EQ(Value(d).type_name(), "OrderedDict");
  EXPECT_EQ(Value(Dict()).type_name(), "dict");
}

TEST(SerializeValue, CopiesAreDeepButShareTensors) {
  Dict inner;
  inner.insert_or_assign("t", torch::zeros({2}));
  Dict outer;
  outer.insert_or_assign("inner", std::move(inner));
  Value a(std::move(outer));
  Value b = a;
  b.to_dict().find("inner")->to_dict().insert_or_assign("x", 1);
  EXPECT_EQ(a.at("inner").to_dict().size(), 1u);
  EXPECT_EQ(b.at("inner").to_dict().size(), 2u);
  // Tensors are shared, as torch::Tensor copies are.
  b.at("inner").at("t").to_tensor().fill_(3);
  EXPECT_EQ(a.at("inner").at("t").to_tensor()[0].item<float>(), 3.0f);
  Value c;
  c = a;
  EXPECT_TRUE(c.is_dict());
  Value moved = std::move(c);
  EXPECT_TRUE(moved.contains("inner"));
}

TEST(SerializeValue, Printing) {
  Dict d = Dict::ordered_dict();
  d.insert_or_assign("w", torch::zeros({2, 3}));
  d.insert_or_assign("b", Value::bytes("a\xff"));
  d.insert_or_assign(1, Value::list({true, Value(), 0.5}));
  std::ostringstream s;
  s << Value(d);
  EXPECT_EQ(s.str(),
            "OrderedDict({'w': tensor(Float[2, 3]), 'b': b'a\\xff', 1: [True, None, 0.5]})");
}

}  // namespace
