//! Textures the panels draw: images from the state uploaded to egui once, re-made when
//! their source changes.

use eframe::egui;

use crate::he::TemplateId;

/// Textures uploaded from state images, re-made when their source changes.
#[derive(Default)]
pub struct Textures {
    pub preview: Option<(u64, egui::TextureHandle)>,
    /// Crops of the last enrolment, keyed by its first template id.
    pub enrolled: Option<(TemplateId, Vec<egui::TextureHandle>)>,
    /// Crops of the shots waiting, keyed by the newest shot's serial.
    pub shots: Option<(u64, Vec<egui::TextureHandle>)>,
    /// The last probe's crop.
    pub probe: Option<(u64, egui::TextureHandle)>,
}

/// Uploads an RGB image as a texture.
pub fn texture(ctx: &egui::Context, name: &str, img: &image::RgbImage) -> egui::TextureHandle {
    let c = egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw());
    ctx.load_texture(name, c, egui::TextureOptions::LINEAR)
}
