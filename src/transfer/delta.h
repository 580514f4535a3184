// Delta transfer, the method on one page (DESIGN §1, specs/training.md §8; docs/transfer.md).
//
//   teacher T = Base + trained LoRA,   P = Base with the LoRA off,
//   student S = Turbo + LoRA in training, S0 = Turbo with the LoRA off,
//   c = the caption, u = the empty caption, all at the same (x_σ, σ).
//
// The student is CFG-distilled, so it is compared with the CFG-guided teacher at guidance g:
//   S(c) ≈ S0(c) + (T_g − P_g),  T_g − P_g = g·δc + (1 − g)·δu,  δc = T(c) − P(c),  δu = T(u) − P(u).
// Approximate form: the LoRA leaves the unconditional prediction alone (δu = 0).
// Record (step 1) computes δc [and δu]; learn (step 2) computes S0(c) and regresses S(c) on the
// target. This file is the only place that arithmetic lives.
#pragma once
#include <vector>

#include <ATen/Tensor.h>

#include "models/family.h"

namespace dt {

// δ = M_lora(x, σ, text) − M(x, σ, text) with the model's LoRA on, then off, at one point, without
// gradients, in float32 [B, C, h, w]. `paired`: both halves in one forward of twice the batch with
// a per-sample LoRA scale of 1 and 0 (faster); otherwise two forwards (half the activations).
at::Tensor lora_delta(Denoiser& model, const at::Tensor& x, const at::Tensor& sigma,
                      const std::vector<TextFeatures>& text, bool paired);

// The learn target S0(c) + g·δc + (1 − g)·δu per item; δu undefined = the approximate form. float32.
// An item whose c is the empty caption (caption dropout) has c = u, so T_g(u) − P_g(u) = δu and its
// target is S0(u) + δu in either form: it was recorded with δc = δu, and takes g = 1. (The
// approximate form's g·δc would push it g times too far.)
at::Tensor transfer_target(const at::Tensor& s0_c, const at::Tensor& delta_c, const at::Tensor& delta_u, double guidance,
                           const std::vector<bool>& empty_caption);

// The prediction of `model` with its LoRA off and no gradients: P(c) on the teacher, S0(c) on the
// student.
at::Tensor prior_prediction(Denoiser& model, const at::Tensor& x, const at::Tensor& sigma,
                            const std::vector<TextFeatures>& text);

}  // namespace dt
