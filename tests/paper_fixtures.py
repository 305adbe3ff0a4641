"""Tiny randomly initialised stand-ins for the paper profiles' pretrained inputs (seconds on CPU).

  sd_v1_folder       a model with Stable Diffusion v1's structure, saved like the real snapshot
                     (``StableDiffusionPipeline.save_pretrained``: unet, vae, text_encoder, tokenizer,
                     scheduler, safety_checker, feature_extractor): SD's U-Net block types (3 cross-
                     attention down blocks + 1 plain, mirrored up), a VAE that downsamples 8x, a 77-token
                     CLIP text encoder, SD's PNDM scheduler config; widths cut to a few channels (11 MB)
  facenet_weights    a random ``InceptionResnetV1`` state dict, the file ``evaluation.facenet.weights`` names
  clip_folder        a tiny ``CLIPModel`` + processor + tokenizer, the folder ``evaluation.clip.path`` names
  celeba_hq_tree     a CelebAMask-HQ-layout tree (``tests.helpers.build_celeba_hq``) of face photos
  paper_config       the ``--config`` overrides that point ``profile=paper_faces`` at all of them and shrink it
"""

from __future__ import annotations

from pathlib import Path

# SD v1's U-Net (models/sd_v1.SD_V1_UNET_CONFIG) with every width cut down: same block types, layers,
# attention layout; 64 px images -> 8x8 latents.
UNET_WIDTHS = {"block_out_channels": [32, 32, 64, 64], "cross_attention_dim": 32, "norm_num_groups": 32,
               "attention_head_dim": 8, "sample_size": 8}
TEXT_HIDDEN = 32
MAX_LENGTH = 77  # SD v1's CLIP context
# the prompts the paper profiles tokenise (task prompts, class / replay / regularisation prompts)
CAPTIONS = ["a photo of a person", "a portrait of a person", "a close-up photo of a face", "a photo of a man",
            "a photo of a woman", "a person smiling", "a headshot of a person", "a photo of a waterfall"]


def sd_v1_unet_config() -> dict:
    from continual_diffusion.models.sd_v1_architecture import SD_V1_UNET_CONFIG

    return {**SD_V1_UNET_CONFIG, **UNET_WIDTHS}


def sd_v1_folder(out: Path, seed: int = 0) -> Path:
    """A random SD-v1-structured pipeline saved in the diffusers layout at ``out`` (returned)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    from continual_diffusion.models.tokenizer import train_clip_bpe

    out = Path(out)
    tokenizer = train_clip_bpe(CAPTIONS, vocab_size=300, max_length=MAX_LENGTH,
                               out=out.parent / f"{out.name}_tokenizer")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**sd_v1_unet_config())
    vae = AutoencoderKL(  # SD's VAE layout, 4 blocks: /8
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16, 32, 32],
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.18215)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    scheduler.register_to_config(clip_sample=False)  # in SD v1.4 / v1.5's scheduler_config.json (DDIM reads it)
    safety_checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=37, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16))
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=safety_checker,
                                   feature_extractor=feature_extractor, requires_safety_checker=True)
    pipe.save_pretrained(out)
    return out


def facenet_weights(path: Path, seed: int = 0) -> Path:
    """A random facenet-pytorch ``InceptionResnetV1`` state dict (the VGGFace2 weights are not offline)."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(InceptionResnetV1(pretrained=None, classify=False).state_dict(), path)
    return Path(path)


def clip_folder(out: Path, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` with its processor and tokenizer, saved with ``save_pretrained`` (the layout of
    ``openai/clip-vit-large-patch14``; the configuration of tests/metrics/test_clip_score.py)."""
    import torch
    import transformers

    from continual_diffusion.models.tokenizer import train_clip_bpe

    out = Path(out)
    tokenizer = train_clip_bpe(CAPTIONS, vocab_size=200, max_length=MAX_LENGTH, out=out)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=MAX_LENGTH, **ids),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37),
        projection_dim=16)
    torch.manual_seed(seed)
    transformers.CLIPModel(config).save_pretrained(out)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(out)
    return out


def face_image(identity: int, image: int, size: int = 96):
    """A photo with a face MTCNN finds: a crop of matplotlib's sample portrait (Grace Hopper), shifted per
    image, tinted and mirrored per identity (so every image is distinct)."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image, ImageOps

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:  # 512 x 600, the face near the top
        photo = photo.convert("RGB")
    dx, dy = 12 * (image % 3), 12 * (image // 3 % 3)
    crop = photo.crop((70 + dx, 40 + dy, 430 + dx, 400 + dy)).resize((size, size), Image.BICUBIC)
    if identity % 2:
        crop = ImageOps.mirror(crop)
    tint = np.array([1.0, 1.0, 1.0]) + 0.15 * np.eye(3)[identity % 3]
    return Image.fromarray(np.clip(np.asarray(crop, dtype=float) * tint, 0, 255).astype(np.uint8))


def celeba_hq_tree(root: Path, identities: int = 3, images: int = 6) -> Path:
    """A CelebAMask-HQ tree (``tests.helpers.build_celeba_hq``, identity_CelebA.txt inside) of ``identities``
    x ``images`` photos with a face in each (``face_image``): facenet finds the real faces it compares with."""
    from tests.helpers import build_celeba_hq

    root = Path(root)
    by_identity = build_celeba_hq(root, {str(100 + i): images for i in range(identities)})
    for i, indices in enumerate(by_identity.values()):
        for j, hq in enumerate(indices):
            face_image(i, j).save(root / "CelebA-HQ-img" / f"{hq}.jpg", quality=95)
    return root


def paper_inputs(root: Path) -> dict[str, Path]:
    """Every stand-in under ``root``: {"sd", "facenet", "clip", "celeba_hq"}."""
    root = Path(root)
    return {"sd": sd_v1_folder(root / "sd-v1"), "facenet": facenet_weights(root / "facenet" / "random-vggface2.pt"),
            "clip": clip_folder(root / "clip"), "celeba_hq": celeba_hq_tree(root / "CelebAMask-HQ")}


def paper_config(inputs: dict[str, Path], methods: list[str], tasks: int = 2, steps: int = 3,
                 samples: int = 2, inference_steps: int = 2) -> list[str]:
    """Snakemake ``--config`` items (nested YAML: Snakemake 9 rejects dotted keys) for ``profile=paper_faces``
    on the stand-ins, shrunk to seconds per job."""
    images = 6
    return [
        "profile=paper_faces",
        f"data={{faces: {{n_tasks: {tasks}, min_images: {images}, max_images: {images}, resolution: 64}}}}",
        f"sources={{celeba_hq: {{root: '{inputs['celeba_hq']}'}}}}",
        f"model={{stable_diffusion: {{path: '{inputs['sd']}'}}}}",
        f"train={{methods: [{', '.join(methods)}], steps: {{faces: {steps}}}, batch_size: 2, "
        f"checkpoint_every: {steps}}}",
        "methods={dreambooth: {prior_images: 2}, "
        "generative_replay: {replay_per_concept: 2, replay_steps: 2, replay_batch_size: 2}, "
        "custom_diffusion_ewc: {fisher_samples: 2}, custom_diffusion_merge: {regularization_count: 4}}",
        f"evaluation={{samples_per_concept: {samples}, inference_steps: {inference_steps}, batch_size: 4, "
        f"facenet: {{weights: '{inputs['facenet']}', image_size: 96, margin: 8}}, "
        f"clip: {{path: '{inputs['clip']}'}}}}",
        "report={grid_tasks: [1, 2], grid_images: 2}",
    ]
