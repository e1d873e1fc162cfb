// mgd: Matching Guided Distillation (Yue, Deng, Zhou, ECCV 2020) on LibTorch.
// The umbrella header: everything a user of the library needs.
#pragma once

#include "mgd/distiller/distiller.h"
#include "mgd/distiller/feature_net.h"
#include "mgd/loss/loss.h"
#include "mgd/margins/margins.h"
#include "mgd/reducers/amp.h"
#include "mgd/reducers/rd.h"
#include "mgd/reducers/reducer.h"
#include "mgd/reducers/sm.h"
#include "mgd/reducers/sp.h"
#include "mgd/serialize/checkpoint.h"
#include "mgd/serialize/state_dict.h"
#include "mgd/serialize/value.h"
#include "mgd/solver/assignment.h"
#include "mgd/util/threads.h"
